// The alerting rules. Every rule carries `severity`, and `check` where one alert has several
// conditions; the annotations `summary`, `description`, `runbook_url` and `dashboard_url`.
// docs/alerts.md explains each rule and every setting of config.libsonnet.
local promql = import 'lib/promql.libsonnet';

{
  local c = $._config,
  local q = promql.new(c),
  local sel = q.sel,
  local S = q.store,
  local J = q.job,

  local storeUp = 'max by (%s) (%s) == 1' % [S, sel('apscheduler_up')],
  local sourceUpAnywhere(source) = 'max by (%s) (%s) == 1' % [S, q.sourceUp(source)],
  local lastFinished =
    '(%(s)s >= %(f)s or %(f)s or %(s)s)' % {
      s: sel('apscheduler_job_last_success_timestamp_seconds'),
      f: sel('apscheduler_job_last_failure_timestamp_seconds'),
    },
  // A run the trigger implied that neither finished nor is running, on a job that is not paused
  // (one replica's view, with both sources it needs fresh).
  local expectedRunMissing =
    q.fresh(
      q.fresh(
        '(%s > %s unless %s > 0 unless %s == 1)' % [
          sel('apscheduler_job_expected_run_timestamp_seconds'),
          lastFinished,
          sel('apscheduler_job_running'),
          sel('apscheduler_job_paused'),
        ],
        'history'
      ),
      'jobs'
    ),
  local paused = 'max by (%s) (%s) == 1' % [J, sel('apscheduler_job_paused')],

  // Where an alert links to: the job's drill-down, the store's overview, or (about a scrape
  // target, which has no jobstore) the overview as it opens.
  local dashboard(scope) =
    if c.grafanaUrl == '' then {}
    else {
      dashboard_url: {
        job: '%s/d/%s?var-jobstore={{ $labels.jobstore }}&var-job_id={{ $labels.job_id }}' % [c.grafanaUrl, c.jobDashboardUid],
        store: '%s/d/%s?var-jobstore={{ $labels.jobstore }}' % [c.grafanaUrl, c.dashboardUid],
        target: '%s/d/%s' % [c.grafanaUrl, c.dashboardUid],
      }[scope],
    },

  // A per-job alert links to the job's page on the exporter. The alert itself has no `instance`
  // (replicas count once), so by default the link asks Prometheus which replica serves the
  // store and uses its address; `exporterUrl` replaces that with a fixed (proxied) address.
  local jobPath = '/jobs/{{ $labels.jobstore | urlquery }}/{{ $labels.job_id | urlquery }}',
  local jobPage(scope) =
    if scope != 'job' then {}
    else if c.exporterUrl != '' then { job_page_url: c.exporterUrl + jobPath }
    else {
      // The replica is looked up among the alert's own app (its group labels), so two apps
      // that both call their store `default` each link to their own exporter.
      local labels = ['jobstore'] + c.groupLabels,
      local matchers = std.join(', ', ['%s=%%q' % l for l in labels]),
      local args = std.join(' ', ['$labels.%s' % l for l in labels]),
      job_page_url:
        '{{ with printf `%s` %s | query | sortByLabel "instance" }}' % [sel('jobstore_exporter_source_up', matchers), args]
        + 'http://{{ . | first | label "instance" }}' + jobPath + '{{ end }}',
    },

  local rule(name, expr, severity, summary, description, for_='', check='', scope='store') = {
    alert: name,
    expr: expr,
    [if for_ != '' then 'for']: for_,
    labels: { severity: severity } + (if check != '' then { check: check } else {}),
    annotations: {
      summary: summary,
      description: std.strReplace(description, '$STORE', q.storeText),
      runbook_url: c.runbookUrlPattern % std.asciiLower(name),
    } + dashboard(scope) + jobPage(scope),
  },

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'apscheduler-backups',
        rules: [
          rule(
            'APSchedulerBackupFailed',
            |||
              max by (%(S)s) (%(failedAt)s)
                and on (%(S)s)
              max by (%(S)s) (%(success)s) == 0
              or
              max by (%(S)s) (%(success)s) == 0
            ||| % {
              S: S,
              failedAt: q.fresh(sel('apscheduler_backup_last_failure_timestamp_seconds'), 'history'),
              success: q.fresh(sel('apscheduler_backup_last_run_success'), 'history'),
            },
            'critical',
            'The latest database backup failed.',
            'The latest run of the backup job in $STORE failed{{ if gt $value 0.0 }} at {{ $value | humanizeTimestamp }}{{ end }}. No newer backup has succeeded since; the alert clears when the next backup succeeds.',
            c.backupFailedFor,
            'last_run',
          ),
          rule(
            'APSchedulerBackupFailed',
            |||
              (
                  max by (%(S)s) (
                      max by (%(J)s) (last_over_time(%(paused)s[1h] offset %(after)s))
                    and on (%(J)s)
                      max by (%(J)s) (%(info)s)
                  )
                or
                  max by (%(S)s) (max_over_time(%(success)s[%(memory)s]))
              )
              and on (%(S)s) %(storeUp)s
              and on (%(S)s) %(historyUp)s
              unless on (%(S)s) max by (%(S)s) (%(success)s)
            ||| % {
              S: S,
              J: J,
              paused: sel('apscheduler_job_paused'),
              after: c.backupNeverRanAfter,
              info: sel('apscheduler_backup_info'),
              success: sel('apscheduler_backup_last_run_success'),
              memory: c.backupResultMemory,
              storeUp: storeUp,
              historyUp: sourceUpAnywhere('history'),
            },
            'critical',
            'No backup result is reported.',
            'The exporter reads $STORE and its history table but reports no backup run: the backup job has been registered for over %s without finishing a run, or its history rows disappeared. Check that the backup job runs (apscheduler_backup_info names it).' % c.backupNeverRanAfter,
            c.backupNoResultFor,
            'no_result',
          ),
          rule(
            'APSchedulerBackupMissing',
            'time() - max by (%s) (%s) > %d\n' % [
              S,
              q.fresh(sel('apscheduler_backup_last_success_timestamp_seconds'), 'history'),
              c.backupMaxAgeSeconds,
            ],
            'critical',
            'No recent successful database backup.',
            'The last successful backup of $STORE finished {{ $value | humanizeDuration }} ago.',
            c.backupFailedFor,
            'last_success',
          ),
          rule(
            'APSchedulerBackupMissing',
            'max by (%s) (%s)\n' % [J, q.backupJob(expectedRunMissing)],
            'critical',
            'The scheduled database backup did not run.',
            'The backup job {{ $labels.job_id }} in $STORE was due at {{ $value | humanizeTimestamp }}, but no run has finished since and none is running. A restart or deploy around that time skips a run silently when jobs are re-registered with replace_existing=True.',
            c.backupExpectedRunFor,
            'expected_run',
            'job',
          ),
          rule(
            'APSchedulerBackupMissing',
            |||
              max by (%(S)s) (%(files)s) == 0
              and on (%(S)s)
              (
                  max by (%(S)s) (max_over_time(%(allFiles)s[%(memory)s])) > 0
                or
                  max by (%(S)s) (%(lastSuccess)s)
              )
            ||| % {
              S: S,
              files: q.fresh(sel('apscheduler_backup_files'), 'backups'),
              allFiles: sel('apscheduler_backup_files'),
              memory: c.backupDirMemory,
              lastSuccess: sel('apscheduler_backup_last_success_timestamp_seconds'),
            },
            'critical',
            'The backup directory holds no backup files.',
            'backup_dir of $STORE contains no backup files, although it held some recently or a backup run reported success. Rotation may have deleted them, or the volume is not the one the backup job writes to.',
            c.backupDirFor,
            'backup_dir_no_files',
          ),
          rule(
            'APSchedulerBackupMissing',
            |||
              max by (%(S)s) (%(size)s) == 0
              unless on (%(S)s) max by (%(S)s) (%(files)s) == 0
              unless on (%(S)s) max by (%(S)s) (%(running)s) > 0
            ||| % {
              S: S,
              size: q.fresh(sel('apscheduler_backup_newest_file_size_bytes'), 'backups'),
              files: sel('apscheduler_backup_files'),
              running: q.backupJob(sel('apscheduler_job_running')),
            },
            'critical',
            'The newest backup file is empty.',
            'The newest file in backup_dir of $STORE is 0 bytes and no backup is running: the last backup wrote nothing usable.',
            c.backupEmptyFileFor,
            'backup_dir_empty_file',
          ),
          rule(
            'APSchedulerBackupMissing',
            |||
              time() - max by (%(S)s) (%(newest)s) > %(age)d
              unless on (%(S)s) max by (%(S)s) (%(size)s) == 0
              unless on (%(S)s) max by (%(S)s) (%(files)s) == 0
            ||| % {
              S: S,
              newest: q.fresh(sel('apscheduler_backup_newest_file_timestamp_seconds'), 'backups'),
              age: c.backupFileMaxAgeSeconds,
              size: sel('apscheduler_backup_newest_file_size_bytes'),
              files: sel('apscheduler_backup_files'),
            },
            'critical',
            'The newest backup file is too old.',
            'The newest file in backup_dir of $STORE was written {{ $value | humanizeDuration }} ago.',
            c.backupDirFor,
            'backup_dir_stale_file',
          ),
        ],
      },
      {
        name: 'apscheduler-jobs',
        rules: [
          rule(
            'APSchedulerJobOverdue',
            'max by (%s) (%s) > %s\n' % [
              J,
              q.fresh(sel('apscheduler_job_overdue_seconds'), 'jobs'),
              c.jobOverdueSeconds,
            ],
            'warning',
            'A scheduled job is overdue.',
            'Job {{ $labels.job_id }} in $STORE had not been started {{ $value | humanizeDuration }} after its fire time when the store was last read, beyond its misfire grace time.',
            c.jobOverdueFor,
            scope='job',
          ),
          rule(
            'APSchedulerJobFailing',
            |||
              max by (%(J)s) (%(failures)s) >= %(n)s
              unless on (%(J)s) %(paused)s
            ||| % {
              J: J,
              failures: q.otherJobs(q.fresh(sel('apscheduler_job_consecutive_failures'), 'history')),
              n: c.jobFailingConsecutive,
              paused: paused,
            },
            'warning',
            'A scheduled job keeps failing.',
            'Job {{ $labels.job_id }} in $STORE has failed {{ $value }} time(s) in a row since its last successful run.',
            c.jobFailingFor,
            'consecutive',
            'job',
          ),
          rule(
            'APSchedulerJobFailing',
            |||
              max by (%(J)s) (
                %(failed)s
              )
                > %(ratio)s
              and on (%(J)s)
              max by (%(J)s) (
                %(total)s
              )
                >= %(min)s
              unless on (%(J)s) %(paused)s
            ||| % {
              local failed = 'sum without (status) %s' % q.runs('status="failed"', c.jobFailingRatioWindow),
              local total = 'sum without (status) %s' % q.runs('status=~"success|failed"', c.jobFailingRatioWindow),
              J: J,
              failed: q.otherJobs(q.fresh('%s / %s' % [failed, total], 'history')),
              total: q.otherJobs(q.fresh(total, 'history')),
              ratio: c.jobFailingRatio,
              min: c.jobFailingRatioMinRuns,
              paused: paused,
            },
            'warning',
            'A scheduled job fails often.',
            '{{ $value | humanizePercentage }} of the runs of job {{ $labels.job_id }} in $STORE failed over the last %s.' % c.jobFailingRatioWindow,
            c.jobFailingRatioFor,
            'ratio',
            'job',
          ),
          rule(
            'APSchedulerJobMissedRuns',
            |||
              max by (%(J)s) (
                %(missed)s
              )
              unless on (%(J)s) %(paused)s
            ||| % {
              local missedIn(w) = 'sum without (status) %s > 0' % q.runs('status="missed"', w),
              local ranIn(w) = 'sum without (status) %s > 0' % q.runs('status=~"success|failed"', w),
              J: J,
              missed: q.otherJobs(q.fresh(
                '(%s or (%s unless %s))' % [
                  missedIn(c.jobMissedRunsWindow),
                  missedIn(c.jobMissedRunsMemory),
                  ranIn(c.jobMissedRunsMemory),
                ],
                'history'
              )),
              paused: paused,
            },
            'warning',
            'A scheduled job missed runs.',
            'Job {{ $labels.job_id }} in $STORE missed {{ printf "%.0f" $value }} run(s) recently: their fire time passed beyond the job\'s misfire grace time. The alert stays until the job runs again.',
            c.jobMissedRunsFor,
            'missed_runs',
            'job',
          ),
          rule(
            'APSchedulerJobMissedRuns',
            'max by (%s) (%s)\n' % [J, q.otherJobs(expectedRunMissing)],
            'warning',
            'A scheduled run of a job did not happen.',
            'Job {{ $labels.job_id }} in $STORE was due at {{ $value | humanizeTimestamp }}, but no run has finished since and none is running.',
            c.jobExpectedRunFor,
            'expected_run',
            'job',
          ),
          rule(
            'APSchedulerJobStuck',
            |||
              time() - max by (%(J)s) (%(since)s) > %(max)d
              and on (%(J)s) max by (%(J)s) (%(running)s) > 0
            ||| % {
              J: J,
              since: q.fresh(sel('apscheduler_job_running_since_timestamp_seconds'), 'history'),
              running: q.fresh(sel('apscheduler_job_running'), 'history'),
              max: c.jobStuckSeconds,
            },
            'warning',
            'A job run has been running for too long.',
            'Job {{ $labels.job_id }} in $STORE has a run that started {{ $value | humanizeDuration }} ago and has not finished.',
            c.jobStuckFor,
            scope='job',
          ),
        ],
      },
      {
        name: 'apscheduler-scheduler',
        rules: [
          rule(
            'APSchedulerSchedulerDown',
            |||
              time() - max by (%(S)s) (max_over_time(%(beat)s[%(memory)s])) > %(age)d
              and on (%(S)s) %(heartbeatsUp)s
              and on (%(S)s) %(storeUp)s
            ||| % {
              S: S,
              beat: sel('apscheduler_scheduler_last_heartbeat_timestamp_seconds'),
              memory: c.heartbeatMemory,
              age: c.heartbeatMaxAgeSeconds,
              heartbeatsUp: sourceUpAnywhere('heartbeats'),
              storeUp: storeUp,
            },
            'critical',
            'No APScheduler scheduler is running.',
            'No scheduler process has written a heartbeat for $STORE for {{ $value | humanizeDuration }}. Jobs in this store are not being executed.',
            c.schedulerDownFor,
            'heartbeat',
          ),
          rule(
            'APSchedulerSchedulerDown',
            |||
              max by (%(S)s) (%(overdue)s) > 0
              unless on (%(S)s) max by (%(S)s) (max_over_time(%(beat)s[%(memory)s]))
            ||| % {
              S: S,
              overdue: q.fresh(sel('apscheduler_jobs_overdue'), 'jobs'),
              beat: sel('apscheduler_scheduler_last_heartbeat_timestamp_seconds'),
              memory: c.heartbeatMemory,
            },
            'critical',
            'No APScheduler scheduler seems to be running.',
            '{{ $value }} active job(s) in $STORE are overdue beyond their misfire grace time, and no scheduler writes heartbeats for this store: the scheduler is probably not running.',
            c.schedulerOverdueFor,
            'overdue_jobs',
          ),
          rule(
            'APSchedulerMultipleSchedulers',
            |||
              count by (%(S)s) (
                max by (%(S)s, scheduler) (%(running)s) == 1
              )
                > %(max)d
            ||| % {
              S: S,
              running: q.fresh(sel('apscheduler_scheduler_running'), 'heartbeats'),
              max: c.schedulersRunningMax,
            },
            'warning',
            'Several schedulers run the same job store.',
            '{{ $value }} scheduler processes report running on $STORE. APScheduler 3 does not lock jobs, so each of them runs every job: runs happen more than once.',
            c.schedulersDuplicateFor,
          ),
        ],
      },
      {
        name: 'jobstore-exporter',
        rules: [
          rule(
            'APSchedulerJobStoreDown',
            |||
              time() - max by (%(S)s) (%(lastOk)s)
                and on (%(S)s)
              max by (%(S)s) (%(up)s) == 0
              or
              max by (%(S)s) (%(up)s) == 0
            ||| % {
              S: S,
              lastOk: sel('jobstore_exporter_last_poll_success_timestamp_seconds', 'source="jobs"'),
              up: sel('apscheduler_up'),
            },
            'critical',
            'The exporter cannot read the APScheduler job store.',
            'No exporter can read $STORE{{ if gt $value 0.0 }}; the last successful read was {{ $value | humanizeDuration }} ago{{ else }} and none has read it since it started{{ end }}. The other alerts for this store are quiet until it recovers.',
            c.jobStoreDownFor,
          ),
          rule(
            'JobstoreExporterSourceDown',
            |||
              min by (%(S)s, source) (%(sourceUp)s) == 0
              unless on (%(S)s) max by (%(S)s) (%(up)s) == 0
            ||| % {
              S: S,
              sourceUp: sel('jobstore_exporter_source_up'),
              up: sel('apscheduler_up'),
            },
            'warning',
            'The exporter cannot read one of its sources.',
            'An exporter of $STORE fails to read its {{ $labels.source }} source (see jobstore_exporter_poll_errors_total and its log). The alerts that depend on that source stay quiet until it recovers.',
            c.sourceDownFor,
          ),
          rule(
            'JobstoreExporterDown',
            'up{%s} == 0\n' % c.selector,
            'warning',
            'Prometheus cannot scrape jobstore-exporter.',
            'Prometheus cannot scrape {{ $labels.instance }} (scrape job {{ $labels.job }}). Alerts based on its metrics stay quiet until it is back.',
            c.exporterDownFor,
            'target_down',
            'target',
          ),
          rule(
            'JobstoreExporterDown',
            'absent(up{%s})\n' % c.selector,
            'warning',
            'No jobstore-exporter target is being scraped.',
            'Prometheus has no target matching %s: the exporter was removed from service discovery or the scrape job was renamed. Alerts based on its metrics stay quiet until it is back.' % c.selector,
            c.exporterAbsentFor,
            'target_absent',
            'target',
          ),
          rule(
            'JobstoreExporterRenderFailing',
            // About one target, as JobstoreExporterDown: its labels stay, the parts add up.
            'sum without (part) (increase(%s[%s])) > 0\n' % [
              sel('jobstore_exporter_render_errors_total'),
              c.renderFailingWindow,
            ],
            'warning',
            'The exporter fails to render its metrics.',
            'The exporter {{ $labels.instance }} failed to render /metrics about {{ $value | printf "%%.0f" }} time(s) in the last %s: it serves the last body it rendered, so the series a poll changes are stale until a render succeeds (its log has one ERROR line per failed render; /readyz answers 503 meanwhile).' % c.renderFailingWindow,
            '',
            '',
            'target',
          ),
          rule(
            'APSchedulerUndecodableJobs',
            'max by (%s) (%s) > %d\n' % [S, sel('jobstore_exporter_undecodable_jobs'), c.undecodableJobs],
            'warning',
            'Some jobs in the job store cannot be decoded.',
            '{{ $value }} row(s) of $STORE cannot be decoded safely by the exporter: their name, trigger and schedule are unknown (trigger="other" in apscheduler_job_info), so they are judged overdue with the default grace and their expected runs are not checked.',
            c.undecodableFor,
          ),
        ],
      },
    ],
  },
}
