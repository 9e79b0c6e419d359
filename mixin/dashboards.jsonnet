// The dashboards' panel specs: {file name: spec}. python mixin/render.py builds
// grafana/dashboards/*.json from them (mixin/build_dashboards.py, with grafana-foundation-sdk).
// Another configuration:  python mixin/render.py --config my-config.libsonnet --out DIR
function(config={})
  ((import 'mixin.libsonnet') + { _config+:: config }).grafanaDashboardSpecs
