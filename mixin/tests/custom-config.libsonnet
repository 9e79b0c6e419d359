// A non-default configuration, rendered and tested by tests/test_alert_rules.py (the alerts) and
// tests/test_dashboard.py (both outputs, through `python mixin/render.py --config`): another
// scrape job name, apps told apart by `cluster` and `namespace`, backups every 6 hours, a
// 2-minute heartbeat limit, the runbook on a wiki, the exporter behind a proxy and no Grafana
// link.
{
  selector: 'job="scheduler-sidecar"',
  groupLabels: ['cluster', 'namespace'],
  runbookUrlPattern: 'https://wiki.example.com/apscheduler-runbook#%s',
  grafanaUrl: '',
  exporterUrl: 'https://scheduler.example.com',
  backupMaxAgeSeconds: 7 * 3600,
  heartbeatMaxAgeSeconds: 120,
  jobFailingFor: '2m',
}
