// jobstore-exporter monitoring mixin: alerts and dashboards for APScheduler 3 apps, with one set
// of settings (config.libsonnet). Vendor this directory and import it with your overrides.
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
(import 'dashboards.libsonnet')
