// The Grafana dashboards: an overview of the selected stores that stays small at any number of
// jobs (counts, the worst N jobs, per-store figures), and a per-job drill-down with a
// single-select job. Colours come from the alert thresholds in config.libsonnet. These are panel
// specs (lib/panels.libsonnet); mixin/build_dashboards.py builds Grafana's JSON from them.
local g = import 'lib/panels.libsonnet';

{
  local c = $._config,
  local N = c.dashboardTopN,

  // The labels that identify a store on a dashboard: the group labels (but the scrape job,
  // which the `job` variable selects) and jobstore. Replicas of one exporter count once.
  local storeLabels = [l for l in c.groupLabels if l != 'job'] + ['jobstore'],
  local S = std.join(', ', storeLabels),
  local SJ = S + ', job_id',

  // Which series carry job_id (filtered by the drill-down's job) and which have no jobstore
  // label: generated from the exporter's metric table (python -m exporter.sidecar.metrics.docs).
  local series = import 'lib/series.json',
  local noJobstore = series.noJobstore,
  local perJob = series.perJob,

  // A selector with a dashboard's filters: `job_id` only on the drill-down.
  local selector(withJob) = function(metric, extra=[])
    local matchers = ['job=~"$job"', 'instance=~"$instance"']
                     + (if std.member(noJobstore, metric) then [] else ['jobstore=~"$jobstore"'])
                     + (if withJob && std.member(perJob, metric) then ['job_id=~"$job_id"'] else [])
                     + extra;
    '%s{%s}' % [metric, std.join(', ', matchers)],
  local sel = selector(false),
  local jsel = selector(true),

  local perStore(expr) = 'max by (%s) (%s)' % [S, expr],
  local perStoreJob(expr) = 'max by (%s) (%s)' % [SJ, expr],
  local upDown = { '1': ['Up', 'green'], '0': ['Down', 'red'] },
  local neverRan = { '-1': ['never ran', 'orange'] },
  local backupAgeSteps = [[null, 'green'], [c.backupWarnAgeSeconds, 'orange'], [c.backupMaxAgeSeconds, 'red']],
  local heartbeatSteps = [[null, 'green'], [c.heartbeatWarnAgeSeconds, 'orange'], [c.heartbeatMaxAgeSeconds, 'red']],
  local asText(expr, label, texts) = std.join(' or ', [
    'label_replace(%s == %s, "%s", "%s", "", "")' % [expr, v, label, texts[v]]
    for v in std.objectFields(texts)
  ]),
  local jobLabels = [['jobstore', 'Job store'], ['job_id', 'Job ID']],
  local drillDown = [
    'Job details',
    '/d/%s?${__url_time_range}&var-datasource=${datasource}&var-jobstore=${__data.fields["Job store"]}&var-job_id=${__data.fields["Job ID"]}' % c.jobDashboardUid,
  ],
  local runbook(alert) = ['Runbook: ' + alert, c.runbookUrlPattern % std.asciiLower(alert)],
  // The backup job's series, or -1 ("never ran") for a store whose backup job has no result.
  local orNeverRan(expr) = '%s or %s * -1' % [expr, perStore(sel('apscheduler_backup_info'))],

  local overview = {
    scheduler: [
      g.stat('Jobs', 'Jobs in the selected stores (active and paused), as the scheduler card counts them.',
             ['sum(max by (%s, state) (%s))' % [S, sel('apscheduler_jobs')]], 'none'),
      g.stat('Active jobs', 'Jobs with a next fire time.',
             ['sum(max by (%s, state) (%s))' % [S, sel('apscheduler_jobs', ['state="active"'])]], 'none'),
      g.stat('Paused jobs', 'Jobs without a next fire time (paused).',
             ['sum(max by (%s, state) (%s))' % [S, sel('apscheduler_jobs', ['state="paused"'])]], 'none'),
      g.stat('Schedulers running',
             'Scheduler processes whose heartbeat is fresh and that report running, per store. 0 means nothing runs the jobs; more than %d on one store means jobs run more than once (APScheduler 3 does not lock rows). Exporter replicas count once.' % c.schedulersRunningMax,
             [['count by (%s) (max by (%s, scheduler) (%s) == 1)' % [S, S, sel('apscheduler_scheduler_running')], '{{jobstore}}']],
             'none', [[null, 'red'], [1, 'green'], [c.schedulersRunningMax + 1, 'orange']]),
      g.stat('Overdue jobs', 'Active jobs whose next fire time was further in the past than their misfire grace at the last poll: the scheduler is down or stalled.',
             [[perStore(sel('apscheduler_jobs_overdue')), '{{jobstore}}']], 'none', g.okRed),
      g.stat('Failing jobs', 'Jobs whose most recent finished run failed (the failing-jobs table lists the worst).',
             ['count(%s > 0) or vector(0)' % perStoreJob(sel('apscheduler_job_consecutive_failures'))], 'none', g.okRed),
      local soonest = 'bottomk(%d, %s)' % [N, perStoreJob(sel('apscheduler_job_next_run_delta_seconds'))];
      g.table('Upcoming runs', 'The %d jobs due soonest, with their schedule, next fire time and the time until then. Click a job for its details.' % N,
              [
                ['info', 'max by (%s, name, trigger, schedule) (%s) and on (%s) %s' % [SJ, sel('apscheduler_job_info'), SJ, soonest], 'hidden'],
                ['Next run', '%s * 1000 and on (%s) %s' % [perStoreJob(sel('apscheduler_job_next_run_timestamp_seconds')), SJ, soonest], 'time'],
                ['In', soonest, 'value'],
              ],
              jobLabels + [['name', 'Name'], ['trigger', 'Trigger'], ['schedule', 'Schedule']],
              's', ['In', false], h=9, colored={ In: [[null, 'red'], [0, 'green']] }, links=[drillDown]),
    ],
    backups: [
      g.stat('Last backup', 'Result of the latest run of the backup job (the one apscheduler_backup_info names); "never ran" before its first run.',
             [[orNeverRan(perStore(sel('apscheduler_backup_last_run_success'))), '{{jobstore}}']], 'none',
             [[null, 'red'], [1, 'green']],
             { '1': ['Succeeded', 'green'], '0': ['Failed', 'red'] } + neverRan,
             links=[runbook('APSchedulerBackupFailed')]),
      g.stat('Since last successful backup',
             'Time since the latest successful backup run ended; orange and red at the thresholds of the backup alerts, "never ran" before the first success.',
             [['time() - ' + orNeverRan(perStore(sel('apscheduler_backup_last_success_timestamp_seconds'))), '{{jobstore}}']],
             's', backupAgeSteps, neverRan, links=[runbook('APSchedulerBackupMissing')]),
      g.stat('Newest backup file', 'Size of the newest file in the backup directory; 0 bytes is a failed backup.',
             [[perStore(sel('apscheduler_backup_newest_file_size_bytes')), '{{jobstore}}']], 'bytes', [[null, 'red'], [1, 'green']]),
      g.stat('Backup files', 'Backup files present in the backup directory.',
             [[perStore(sel('apscheduler_backup_files')), '{{jobstore}}']], 'none', [[null, 'red'], [1, 'green']]),
      g.stat('Backups total size', 'All backup files together.',
             [[perStore(sel('apscheduler_backup_total_size_bytes')), '{{jobstore}}']], 'bytes'),
      g.stat('Last backup duration', 'Duration of the latest backup run.',
             [[perStore(sel('apscheduler_backup_last_duration_seconds')), '{{jobstore}}']], 's'),
      g.timeseries('Backup age', 'Time since the last successful backup run and age of the newest backup file, with the alert threshold. A sawtooth that stops dropping is a backup that no longer happens.',
                   [
                     ['time() - %s' % perStore(sel('apscheduler_backup_last_success_timestamp_seconds')), 'last success {{jobstore}}'],
                     ['time() - %s' % perStore(sel('apscheduler_backup_newest_file_timestamp_seconds')), 'newest file {{jobstore}}'],
                   ], 's', steps=[[null, 'green'], [c.backupMaxAgeSeconds, 'red']], thresholdLine=true),
      g.timeseries('Backup storage', 'Size of the newest backup file and of all backup files.',
                   [
                     [perStore(sel('apscheduler_backup_newest_file_size_bytes')), 'newest file {{jobstore}}'],
                     [perStore(sel('apscheduler_backup_total_size_bytes')), 'all files {{jobstore}}'],
                   ], 'bytes'),
    ],
    runs: [
      g.timeseries('Runs by status', 'Finished runs per minute of all selected jobs, by status.',
                   [['60 * sum by (status) (max by (%s, status) (rate(%s[$__rate_interval])))' % [SJ, sel('apscheduler_job_runs_total')], '{{status}}']],
                   'opm', w=8),
      g.timeseries('Jobs with the most failed, missed or skipped runs',
                   'The %d jobs with the most runs that failed, were missed (past their misfire grace) or were skipped (max_instances reached), per rate interval.' % N,
                   [['topk(%d, sum by (%s) (max by (%s, status) (increase(%s[$__rate_interval]))) > 0)' % [N, SJ, SJ, sel('apscheduler_job_runs_total', ['status=~"failed|missed|skipped"'])], '{{job_id}}']],
                   'none', bars=true, w=8),
      g.timeseries('Longest last runs', 'The %d jobs whose most recent finished run took longest.' % N,
                   [['topk(%d, %s)' % [N, perStoreJob(sel('apscheduler_job_last_run_duration_seconds'))], '{{job_id}}']],
                   's', w=8),
      local worst = 'topk(%d, %s > 0)' % [N, perStoreJob(sel('apscheduler_job_consecutive_failures'))];
      local only(expr) = '%s and on (%s) %s' % [expr, SJ, worst];
      g.table('Failing jobs', 'The %d jobs with the most failed runs in a row since their last success: latest values, so daily jobs show too. Click a job for its details.' % N,
              [
                ['info', only('max by (%s, schedule) (%s)' % [SJ, sel('apscheduler_job_info')]), 'hidden'],
                ['Consecutive failures', worst, 'text'],
                ['Last failure', only(perStoreJob(sel('apscheduler_job_last_failure_timestamp_seconds')) + ' * 1000'), 'time'],
                ['Last success', only(perStoreJob(sel('apscheduler_job_last_success_timestamp_seconds')) + ' * 1000'), 'time'],
                ['Last duration', only(perStoreJob(sel('apscheduler_job_last_run_duration_seconds'))), 'value'],
              ],
              jobLabels + [['schedule', 'Schedule']], 's', h=8,
              links=[drillDown, runbook('APSchedulerJobFailing')]),
    ],
    stuck: [
      g.stat('Runs in progress', 'Runs started and not yet finished.',
             ['sum(%s)' % perStoreJob(sel('apscheduler_job_running'))], 'none'),
      local late = 'topk(%d, %s)' % [N, perStoreJob(sel('apscheduler_job_overdue_seconds'))];
      g.table('Past-due jobs',
              'Active jobs that were overdue beyond their misfire grace when the exporter last read the store (apscheduler_job_overdue_seconds, judged at poll time, so a job that fires every second never shows here between polls), the %d most overdue.' % N,
              [
                ['Past due by', late, 'value'],
                ['Was due at', '%s * 1000 and on (%s) %s' % [perStoreJob(sel('apscheduler_job_next_run_timestamp_seconds')), SJ, late], 'time'],
                ['Misfire grace', '%s and on (%s) %s' % [perStoreJob(sel('apscheduler_job_misfire_grace_seconds')), SJ, late], 'value'],
              ],
              jobLabels, 's', ['Past due by', true], w=10,
              colored={ 'Past due by': [[null, 'orange'], [60, 'red']] },
              links=[drillDown, runbook('APSchedulerJobOverdue')]),
      local longest = 'topk(%d, time() - %s)' % [N, perStoreJob(sel('apscheduler_job_running_since_timestamp_seconds'))];
      g.table('Running jobs', 'The %d jobs with the longest unfinished run: since when, for how long, and the last finished run to compare with.' % N,
              [
                ['Running for', longest, 'value'],
                ['Running since', '%s * 1000 and on (%s) %s' % [perStoreJob(sel('apscheduler_job_running_since_timestamp_seconds')), SJ, longest], 'time'],
                ['Last duration', '%s and on (%s) %s' % [perStoreJob(sel('apscheduler_job_last_run_duration_seconds')), SJ, longest], 'value'],
              ],
              jobLabels, 's', ['Running for', true], w=10,
              colored={ 'Running for': [[null, 'green'], [c.jobStuckSeconds, 'red']] },
              links=[drillDown, runbook('APSchedulerJobStuck')]),
    ],
    heartbeats:
      local last = 'max by (%s, scheduler) (%s)' % [S, sel('apscheduler_scheduler_last_heartbeat_timestamp_seconds')];
      local running = 'max by (%s, scheduler) (%s)' % [S, sel('apscheduler_scheduler_running')];
      [
        g.stat('Scheduler state', 'Whether each scheduler process reports running with a fresh heartbeat.',
               [[running, '{{scheduler}}']], 'none', [[null, 'red'], [1, 'green']],
               { '1': ['Running', 'green'], '0': ['Not running', 'red'] }, w=12, textMode='value_and_name'),
        g.stat('Heartbeat age', 'Time since each scheduler process last wrote its heartbeat; orange and red at the thresholds of APSchedulerSchedulerDown.',
               [['time() - ' + last, '{{scheduler}}']], 's', heartbeatSteps, w=12, textMode='value_and_name',
               links=[runbook('APSchedulerSchedulerDown')]),
        g.table('Schedulers', 'Every scheduler process that writes heartbeats into the job store database.',
                [
                  ['state', asText(running, 'state', { '1': 'running', '0': 'not running' }), 'hidden'],
                  ['Last heartbeat', last + ' * 1000', 'time'],
                  ['Heartbeat age', 'time() - ' + last, 'value'],
                ],
                [['jobstore', 'Job store'], ['scheduler', 'Scheduler'], ['state', 'State']], 's',
                ['Heartbeat age', true], w=12, colored={ 'Heartbeat age': heartbeatSteps }),
        g.timeseries('Heartbeat age over time', "Time since each scheduler's last heartbeat.",
                     [['time() - ' + last, '{{scheduler}}']], 's', steps=heartbeatSteps, thresholdLine=true),
      ],
    exporter:
      local bySource = 'max by (%s, source) (%s)';
      [
        g.stat('Sources', 'Whether the last poll of each source (jobs, history, heartbeats, backups) succeeded; a failing source leaves its panels at their last values.',
               [['min by (%s, source) (%s)' % [S, sel('jobstore_exporter_source_up')], '{{source}}']], 'none',
               [[null, 'red'], [1, 'green']], upDown, w=8, textMode='value_and_name',
               links=[runbook('JobstoreExporterSourceDown')]),
        g.stat('Undecodable jobs', 'Job rows whose job_state the exporter could not decode safely.',
               [[perStore(sel('jobstore_exporter_undecodable_jobs')), '{{jobstore}}']], 'none', g.okRed),
        g.stat('Since last successful poll', 'Time since each source was last read successfully.',
               [['time() - ' + bySource % [S, sel('jobstore_exporter_last_poll_success_timestamp_seconds')], '{{source}}']],
               's', [[null, 'green'], [60, 'orange'], [300, 'red']], w=12, textMode='value_and_name'),
        g.timeseries('Poll duration by source', 'Duration of the last poll of each source, per exporter replica.',
                     [['max by (instance, %s, source) (%s)' % [S, sel('jobstore_exporter_poll_duration_seconds')], '{{source}} {{instance}}']], 's', w=8),
        g.timeseries('Poll errors by source', 'Failed polls per rate interval, per exporter replica.',
                     [['sum by (instance, %s, source) (increase(%s[$__rate_interval]))' % [S, sel('jobstore_exporter_poll_errors_total')], '{{source}} {{instance}}']],
                     'none', bars=true, w=8),
        g.table('Build info', 'Versions of the exporter and of the libraries it reads the job store with.',
                [['info', 'max by (instance, version, python_version, apscheduler_version, sqlalchemy_version) (%s)' % sel('jobstore_exporter_build_info'), 'hidden']],
                [['instance', 'Instance'], ['version', 'Version'], ['python_version', 'Python'], ['apscheduler_version', 'APScheduler'], ['sqlalchemy_version', 'SQLAlchemy']],
                'none', w=8),
      ],
  },

  local job = {
    local one(metric, extra=[]) = 'max by (%s) (%s)' % [SJ, jsel(metric, extra)],
    local rate(metric, extra=[], fn='rate') = '%s(%s[$__rate_interval])' % [fn, jsel(metric, extra)],
    card: [
      g.table('Job', 'The selected job: name, trigger, schedule and executor, and which exporter reads it. Click for the job page on that exporter.',
              [['info', 'max by (instance, %s, name, trigger, schedule, executor) (%s)' % [SJ, jsel('apscheduler_job_info')], 'hidden']],
              [['instance', 'Exporter'], ['jobstore', 'Job store'], ['job_id', 'Job ID'], ['name', 'Name'], ['trigger', 'Trigger'], ['schedule', 'Schedule'], ['executor', 'Executor']],
              'none', h=5,
              links=[['Job page on the exporter', 'http://${__data.fields.Exporter}/jobs/${__data.fields["Job store"]}/${__data.fields["Job ID"]}']]),
      g.stat('Next run in', 'Time until the next fire time; negative when overdue. Paused jobs have none.',
             [one('apscheduler_job_next_run_delta_seconds')], 's', [[null, 'red'], [0, 'green']]),
      g.stat('Paused', 'Whether the job is paused.', [one('apscheduler_job_paused')], 'none',
             [[null, 'green'], [1, 'orange']], { '1': ['Paused', 'orange'], '0': ['Active', 'green'] }),
      g.stat('Last result', 'Result of the most recent finished run; "never ran" before the first.',
             ['%s or %s * -1' % [one('apscheduler_job_last_run_success'), one('apscheduler_job_info')]], 'none',
             [[null, 'red'], [1, 'green']], { '1': ['Succeeded', 'green'], '0': ['Failed', 'red'] } + neverRan,
             links=[runbook('APSchedulerJobFailing')]),
      g.stat('Consecutive failures', 'Failed runs since the last success.', [one('apscheduler_job_consecutive_failures')], 'none', g.okRed),
      g.stat('Since last success', 'Time since the most recent successful run ended.',
             ['time() - ' + one('apscheduler_job_last_success_timestamp_seconds')], 's'),
      g.stat('Overdue by', 'How far past its fire time the job was at the last poll, when beyond its grace; 0 otherwise.',
             ['%s or %s * 0' % [one('apscheduler_job_overdue_seconds'), one('apscheduler_job_info')]], 's',
             [[null, 'green'], [1, 'red']], links=[runbook('APSchedulerJobOverdue')]),
    ],
    runs: [
      g.timeseries('Runs by status', 'Finished runs per minute, by status.',
                   [['60 * max by (%s, status) (%s)' % [SJ, rate('apscheduler_job_runs_total')], '{{status}}']], 'opm', w=8),
      g.timeseries('Failed, missed and skipped runs', 'Runs that failed, were missed (past their misfire grace) or were skipped (max_instances reached), per rate interval.',
                   [['max by (%s, status) (%s)' % [SJ, rate('apscheduler_job_runs_total', ['status=~"failed|missed|skipped"'], 'increase')], '{{status}}']],
                   'none', bars=true, w=8, links=[runbook('APSchedulerJobMissedRuns')]),
      g.timeseries('Failure ratio', 'Share of finished runs that failed; gaps where no run finished in the rate interval.',
                   [['max by (%s) (%s) / max by (%s) (%s)' % [SJ, rate('apscheduler_job_runs_total', ['status="failed"']), SJ, 'sum without (status) (%s)' % rate('apscheduler_job_runs_total', ['status=~"success|failed"'])], 'failed']],
                   'percentunit', w=8),
    ],
    durations:
      local quantile(q, name) = [
        'histogram_quantile(%s, max by (le, %s) (%s))' % [q, SJ, rate('apscheduler_job_run_duration_seconds_bucket')],
        name,
      ];
      [
        g.timeseries('Run duration percentiles', 'p50, p95 and p99 of run durations (successful and failed runs) from the duration histogram.',
                     [quantile('0.5', 'p50'), quantile('0.95', 'p95'), quantile('0.99', 'p99')], 's'),
        g.timeseries('Average run duration', 'Mean duration of the runs that finished in each rate interval.',
                     [['max by (%s) (%s) / max by (%s) (%s)' % [SJ, rate('apscheduler_job_run_duration_seconds_sum'), SJ, rate('apscheduler_job_run_duration_seconds_count')], 'mean']], 's'),
        g.timeseries('Last run duration', "Duration of the job's most recent finished run; steps at every run, so daily jobs show too.",
                     [[one('apscheduler_job_last_run_duration_seconds'), 'last run']], 's'),
        g.timeseries('Start delay', 'Actual start minus scheduled time of the most recent run. Growing delays mean a busy executor or a stalled scheduler.',
                     [[one('apscheduler_job_last_run_delay_seconds'), 'delay']], 's'),
      ],
    timing: [
      g.timeseries('Time until next run', 'Next fire time minus now; it dips below zero between a fire time and the poll after it.',
                   [[one('apscheduler_job_next_run_delta_seconds'), 'next run in']], 's'),
      g.timeseries('Running time of the unfinished run', 'How long the oldest unfinished run has been going, against the stuck-run threshold.',
                   [['time() - ' + one('apscheduler_job_running_since_timestamp_seconds'), 'running for']], 's',
                   steps=[[null, 'green'], [c.jobStuckSeconds, 'red']], thresholdLine=true),
    ],
  },

  local variables(withJob) =
    local scope = 'job=~"$job", instance=~"$instance"';
    [
      g.datasourceVariable('Data source', 'The Prometheus that scrapes jobstore-exporter.', 'prometheus', 'Prometheus'),
      g.queryVariable('job', 'Job', 'label_values(apscheduler_up, job)', 'Prometheus scrape job of the exporter.'),
      g.queryVariable('instance', 'Instance', 'label_values(apscheduler_up{job=~"$job"}, instance)', 'Exporter instance (one sidecar; replicas on one database count once).'),
      g.queryVariable('jobstore', 'Job store', 'label_values(apscheduler_up{%s}, jobstore)' % scope, 'Job store name the exporter was configured with.'),
    ] + (
      if withJob then [
        g.queryVariable('job_id', 'Job ID', 'label_values(apscheduler_job_info{%s, jobstore=~"$jobstore"}, job_id)' % scope, 'The APScheduler job to show.', multi=false),
      ] else []
    ),

  // Panel specs per dashboard file; mixin/build_dashboards.py builds the dashboards from them.
  grafanaDashboardSpecs+:: {
    'jobstore-exporter.json': g.dashboard(
      c.dashboardUid,
      'APScheduler job store',
      'APScheduler 3 job stores, backups, scheduler heartbeats and the worst jobs, as served by jobstore-exporter. Per-job detail: the "APScheduler job" dashboard.',
      variables(false),
      [
        ['Scheduler', overview.scheduler],
        ['Backups', overview.backups],
        ['Runs and failures', overview.runs],
        ['Stuck and overdue jobs', overview.stuck],
        ['Scheduler heartbeats', overview.heartbeats],
        ['Exporter health', overview.exporter],
      ],
      [['APScheduler job', '/d/%s' % c.jobDashboardUid, 'One job in detail']],
    ),
    'jobstore-exporter-job.json': g.dashboard(
      c.jobDashboardUid,
      'APScheduler job',
      'One APScheduler job in detail: its schedule, runs, failures and durations, as served by jobstore-exporter.',
      variables(true),
      [
        ['Job', job.card],
        ['Runs', job.runs],
        ['Durations', job.durations],
        ['Timing', job.timing],
      ],
      [['APScheduler job store', '/d/%s' % c.dashboardUid, 'Back to the overview']],
    ),
  },
}
