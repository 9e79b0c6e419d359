// PromQL building blocks shared by the alerts and the dashboards, so both select, de-duplicate
// and guard series the same way.
//
// - `sel` adds the configured selector to every metric.
// - A store is identified by the group labels plus `jobstore` (`store`); one exporter replica's
//   view of it adds `instance` (`replica`). Replicas on one database export the same values, so
//   store-level figures are `max` across replicas, never `sum`.
// - `fresh` keeps a replica's series only while that replica's last poll of the source they come
//   from succeeded: a failing source leaves its last values behind, and rules must not judge
//   by them.
{
  new(c):: {
    local L = self,
    sel(metric, extra=''):: '%s{%s%s}' % [metric, c.selector, if extra == '' then '' else ', ' + extra],
    labels(extra=[]):: std.join(', ', c.groupLabels + ['jobstore'] + extra),
    store:: L.labels(),
    job:: L.labels(['job_id']),
    replica:: std.join(', ', ['instance'] + c.groupLabels + ['jobstore']),
    replicaJob:: L.replica + ', job_id',
    sourceUp(source):: L.sel('jobstore_exporter_source_up', 'source="%s"' % source),
    fresh(expr, source)::
      '%s and on (%s) %s == 1' % [expr, L.replica, L.sourceUp(source)],
    // Series of the store's backup job (the one `apscheduler_backup_info` names) and of every
    // other job.
    backupJob(expr):: '%s and on (%s) %s' % [expr, L.replicaJob, L.sel('apscheduler_backup_info')],
    otherJobs(expr):: '%s unless on (%s) %s' % [expr, L.replicaJob, L.sel('apscheduler_backup_info')],
    // Runs counted by apscheduler_job_runs_total in the last `window`. increase() alone never
    // sees a job's first poll with history: the series is born at its first runs' count. So a
    // series that did not exist `window` ago, while its exporter did, counts in full; other
    // series (and those of a replica younger than `window`) by increase().
    runs(status, window)::
      local s = L.sel('apscheduler_job_runs_total', status);
      local up = L.sel('apscheduler_up');
      '(increase(%(s)s[%(w)s]) and %(s)s offset %(w)s or (%(s)s unless %(s)s offset %(w)s) and on (%(r)s) %(up)s offset %(w)s or increase(%(s)s[%(w)s]))' % {
        s: s,
        w: window,
        up: up,
        r: L.replica,
      },
    // Text naming the store in annotations: its jobstore and whichever group labels are set
    // (but the scrape job, the same for every store in most setups).
    storeText:: 'jobstore {{ $labels.jobstore }}' + std.join('', [
      '{{ with $labels.%s }} (%s {{ . }}){{ end }}' % [l, l]
      for l in c.groupLabels
      if l != 'job'
    ]),
  },
}
