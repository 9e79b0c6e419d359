// Settings of the jobstore-exporter monitoring mixin: the one place to adapt the alerts and the
// dashboards to your Prometheus. Override any of them in your own file:
//
//   (import 'jobstore-exporter-mixin/mixin.libsonnet') + {
//     _config+:: { selector: 'job="scheduler-sidecar"', backupMaxAgeSeconds: 7 * 3600 },
//   }
//
// The alert thresholds and the dashboard colours come from the same numbers, so the two agree.
{
  _config+:: {
    // Label matchers (PromQL, without braces) that select the exporter's series and its `up`.
    selector: 'job="jobstore-exporter"',

    // Labels that tell apps apart when several share one Prometheus (and may all call their
    // store `default`). Series are aggregated by these plus `jobstore` (and `job_id`), so the
    // replicas of one exporter on one database (differing only in `instance`) count once.
    // A label that is not set is harmless.
    groupLabels: ['job', 'namespace', 'app'],

    // Where `runbook_url` points: %s is the alert's anchor (its name in lower case). Set it to
    // wherever your copy of docs/runbook.md is published (a wiki, your Git host).
    runbookUrlPattern: 'docs/runbook.md#%s',

    // The exporter's address as an operator's browser reaches it, for the `job_page_url`
    // annotation of per-job alerts (the job's page: its last runs and their errors). Empty (the
    // default) builds it from the `instance` label of a replica that serves the store; set it
    // when the exporter sits behind a proxy or an ingress, e.g. 'https://scheduler.example.com'.
    exporterUrl: '',

    // Grafana's external address, for the `dashboard_url` annotation; empty leaves it out.
    grafanaUrl: 'http://localhost:3000',
    dashboardUid: 'jobstore-exporter',
    jobDashboardUid: 'jobstore-exporter-job',
    // Rows and series on the overview dashboard's worst-N panels.
    dashboardTopN: 10,

    // Backups (the job `apscheduler_backup_info` names, and `backup_dir`).
    backupMaxAgeSeconds: 26 * 3600,  // last successful backup; also the dashboard's red
    backupWarnAgeSeconds: 25 * 3600,  // the dashboard's orange
    backupNeverRanAfter: '25h',  // a backup job in the store this long without any run
    backupResultMemory: '26h',  // how long vanished backup results are remembered
    backupFileMaxAgeSeconds: 26 * 3600,  // newest file in backup_dir
    backupDirMemory: '26h',  // how long files seen in backup_dir are remembered
    backupFailedFor: '5m',
    backupNoResultFor: '15m',
    backupExpectedRunFor: '30m',  // grace for a backup run to show up after its fire time
    backupDirFor: '15m',
    backupEmptyFileFor: '30m',

    // Jobs.
    jobOverdueSeconds: 0,  // beyond the grace the exporter already applies (overdue_grace)
    jobOverdueFor: '5m',
    jobFailingConsecutive: 1,
    jobFailingFor: '10m',
    jobFailingRatio: 0.25,
    jobFailingRatioMinRuns: 4,
    jobFailingRatioWindow: '1h',
    jobFailingRatioFor: '15m',
    jobMissedRunsWindow: '1h',  // a missed run fires for this long, and after it until the job runs again ...
    jobMissedRunsMemory: '1d',  // ... for at most this long
    jobMissedRunsFor: '5m',
    jobExpectedRunFor: '15m',  // grace for a run to show up after its fire time
    jobStuckSeconds: 3600,
    jobStuckFor: '5m',

    // Schedulers (heartbeats written by the kit).
    heartbeatMaxAgeSeconds: 300,  // newest heartbeat; also the dashboard's red
    heartbeatWarnAgeSeconds: 120,  // the dashboard's orange
    heartbeatMemory: '1d',  // how long a store counts as one with heartbeats
    schedulerDownFor: '5m',
    schedulerOverdueFor: '10m',
    schedulersRunningMax: 1,  // more schedulers on one store run every job more than once
    schedulersDuplicateFor: '10m',

    // The exporter.
    jobStoreDownFor: '5m',
    sourceDownFor: '15m',
    exporterDownFor: '5m',
    exporterAbsentFor: '10m',
    undecodableJobs: 0,
    undecodableFor: '15m',
    // A failed render of /metrics within this window fires JobstoreExporterRenderFailing.
    renderFailingWindow: '10m',
  },
}
