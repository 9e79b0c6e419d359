// Renders grafana/dashboards/*.json: {file name: dashboard}. python mixin/render.py writes them.
// Another configuration:  jsonnet --tla-code-file config=my-config.libsonnet mixin/dashboards.jsonnet
function(config={})
  ((import 'mixin.libsonnet') + { _config+:: config }).grafanaDashboards
