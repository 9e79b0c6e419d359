// Panel specs: what a dashboard shows, as plain data (titles, descriptions, queries, units,
// thresholds, value texts, links, sizes, variables). mixin/build_dashboards.py turns them into
// Grafana's JSON with grafana-foundation-sdk; nothing here knows how Grafana spells a panel.
//
// Thresholds are steps [[value, colour]] from the lowest up (the first value null); value texts
// {value: [text, colour]} (a colour of '' keeps the threshold's); links [title, url].
local queries(exprs) = [
  if std.isArray(item) then { expr: item[0], legend: item[1] } else { expr: item, legend: '__auto' }
  for item in exprs
];

local valueTexts(texts) = [
  { value: value, text: texts[value][0], color: texts[value][1] }
  for value in std.objectFields(texts)
];

local linkSpecs(items) = [{ title: l[0], url: l[1] } for l in items];

{
  okRed: [[null, 'green'], [1, 'red']],
  neutral: [[null, 'text']],

  // A single-value panel per series. exprs: [expr or [expr, legend]].
  stat(title, description, exprs, unit, steps=self.neutral, texts={}, w=4, h=4, textMode='auto', links=[]):: {
    kind: 'stat',
    title: title,
    description: description,
    queries: queries(exprs),
    unit: unit,
    thresholds: steps,
    valueTexts: valueTexts(texts),
    textMode: textMode,
    links: linkSpecs(links),
    w: w,
    h: h,
  },

  // Series over time: lines stepping at each sample, or bars; thresholdLine draws the
  // thresholds' steps as lines.
  timeseries(title, description, exprs, unit, w=12, h=8, bars=false, steps=self.neutral, thresholdLine=false, links=[]):: {
    kind: 'timeseries',
    title: title,
    description: description,
    queries: queries(exprs),
    unit: unit,
    bars: bars,
    thresholds: steps,
    thresholdLine: thresholdLine,
    links: linkSpecs(links),
    w: w,
    h: h,
  },

  // An instant table joining one query per column on their common labels. columns: [header,
  // expr, kind] with kind `value` (shown with `unit`), `time` (Unix ms, a time column), `text`
  // (numbers as plain text) or `hidden` (only its labels). labels: [[label, header]] in order.
  // sortBy: [header, descending]. colored: {header: thresholds} for text coloured by
  // thresholds; links on every cell.
  table(title, description, columns, labels, unit, sortBy=null, w=24, h=8, colored={}, links=[]):: {
    kind: 'table',
    title: title,
    description: description,
    columns: [{ header: c[0], expr: c[1], kind: c[2] } for c in columns],
    labels: [{ label: l[0], header: l[1] } for l in labels],
    unit: unit,
    sortBy: if sortBy == null then null else { header: sortBy[0], descending: sortBy[1] },
    colored: [{ header: header, thresholds: colored[header] } for header in std.objectFields(colored)],
    links: linkSpecs(links),
    w: w,
    h: h,
  },

  // A chained query variable; multi-value ones offer All as `.+`.
  queryVariable(name, label, query, description, multi=true):: {
    kind: 'query',
    name: name,
    label: label,
    query: query,
    description: description,
    multi: multi,
  },

  // The Prometheus datasource picker, starting on the datasource with this uid and name.
  datasourceVariable(label, description, uid, name):: {
    kind: 'datasource',
    name: 'datasource',
    label: label,
    description: description,
    defaultUid: uid,
    defaultName: name,
  },

  // rows: [[title, [panels]]], placed left to right, row after row. links: [title, url,
  // tooltip] to other dashboards, carrying the variables and the time range.
  dashboard(uid, title, description, variables, rows, links=[]):: {
    uid: uid,
    title: title,
    description: description,
    tags: ['apscheduler', 'jobstore-exporter'],
    refresh: '1m',
    timeFrom: 'now-24h',
    variables: variables,
    rows: [{ title: r[0], panels: r[1] } for r in rows],
    links: [{ title: l[0], url: l[1], tooltip: l[2] } for l in links],
  },
}
