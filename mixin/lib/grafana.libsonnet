// Grafana panel builders: stat, time series and instant tables with the field config the
// dashboard schema accepts, and a layout that places panels row by row on the 24-wide grid.
local DS = { type: 'prometheus', uid: '${datasource}' };

local thresholds(steps) = {
  mode: 'absolute',
  steps: [{ color: s[1], value: s[0] } for s in steps],
};

local refId(i) = std.char(std.codepoint('A') + i);

local targets(exprs, table=false, instant=false) = [
  local item = exprs[i];
  local expr = if std.isArray(item) then item[0] else item;
  local legend = if std.isArray(item) then item[1] else '__auto';
  { datasource: DS, editorMode: 'code', expr: expr, refId: refId(i) }
  + (
    if table then { format: 'table', instant: true, range: false }
    else { format: 'time_series', legendFormat: legend, instant: instant, range: !instant }
  )
  for i in std.range(0, std.length(exprs) - 1)
];

{
  DS: DS,
  thresholds: thresholds,
  okRed: thresholds([[null, 'green'], [1, 'red']]),
  neutral: thresholds([[null, 'text']]),

  // Value mappings: {value: [text, colour]}; a colour of '' keeps the threshold's.
  valueMap(texts):: [{
    type: 'value',
    options: {
      [std.objectFields(texts)[i]]: {
        index: i,
        text: texts[std.objectFields(texts)[i]][0],
      } + (
        local color = texts[std.objectFields(texts)[i]][1];
        if color == '' then {} else { color: color }
      )
      for i in std.range(0, std.length(std.objectFields(texts)) - 1)
    },
  }],

  // Data links on a panel's values: [title, url] (in the form the dashboard schema gives links).
  links(items):: [
    {
      title: l[0],
      url: l[1],
      type: 'link',
      icon: 'external link',
      tooltip: '',
      tags: [],
      asDropdown: false,
      targetBlank: false,
      includeVars: false,
      keepTime: !std.startsWith(l[1], 'http'),
    }
    for l in items
  ],

  stat(title, description, exprs, unit, steps=self.neutral, mappings=[], w=4, h=4, textMode='auto', links=[]):: {
    type: 'stat',
    title: title,
    description: description,
    datasource: DS,
    targets: targets(exprs, instant=true),
    fieldConfig: {
      defaults: {
        unit: unit,
        color: { mode: 'thresholds' },
        thresholds: steps,
        mappings: mappings,
      } + (if links == [] then {} else { links: links }),
      overrides: [],
    },
    options: {
      colorMode: 'value',
      graphMode: 'none',
      justifyMode: 'auto',
      orientation: 'auto',
      percentChangeColorMode: 'standard',
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      showPercentChange: false,
      textMode: textMode,
      wideLayout: true,
    },
    _size:: [w, h],
  },

  timeseries(title, description, exprs, unit, w=12, h=8, bars=false, steps=self.neutral, thresholdLine=false, links=[]):: {
    type: 'timeseries',
    title: title,
    description: description,
    datasource: DS,
    targets: targets(exprs),
    fieldConfig: {
      defaults: {
        unit: unit,
        color: { mode: 'palette-classic' },
        custom: {
          drawStyle: if bars then 'bars' else 'line',
          lineInterpolation: if bars then 'linear' else 'stepAfter',
          lineWidth: 1,
          fillOpacity: if bars then 80 else 10,
          gradientMode: 'none',
          showPoints: 'never',
          spanNulls: false,
          axisPlacement: 'auto',
          stacking: { mode: 'none', group: 'A' },
          thresholdsStyle: { mode: if thresholdLine then 'line' else 'off' },
        },
        thresholds: steps,
        min: 0,
      } + (if links == [] then {} else { links: links }),
      overrides: [],
    },
    options: {
      legend: { calcs: [], displayMode: 'list', placement: 'bottom', showLegend: true },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
    _size:: [w, h],
  },

  // An instant table joining one query per column on their common labels. columns: [header,
  // expr, kind] with kind `value` (shown with `unit`), `time` (Unix ms, a time column), `text`
  // (numbers as plain text) or `hidden` (only its labels). labels: [[label, header]] in order.
  // colored: {header: thresholds} for text coloured by thresholds; links: data links [title,
  // url] on every cell.
  table(title, description, columns, labels, unit, sortBy=null, w=24, h=8, colored={}, links=[])::
    local ts = targets([c[1] for c in columns], table=true);
    local field(i) = 'Value #' + ts[i].refId;
    local shown = [i for i in std.range(0, std.length(columns) - 1) if columns[i][2] != 'hidden'];
    local conversions = [
      { targetField: field(i), destinationType: if columns[i][2] == 'time' then 'time' else 'string' }
      for i in shown
      if columns[i][2] == 'time' || columns[i][2] == 'text'
    ];
    {
      type: 'table',
      title: title,
      description: description,
      datasource: DS,
      targets: ts,
      transformations: [{ id: 'merge', options: {} }]
                       + (if conversions == [] then [] else [{ id: 'convertFieldType', options: { conversions: conversions, fields: {} } }])
                       + [{
                         id: 'organize',
                         options: {
                           excludeByName: { Time: true } + {
                             [field(i)]: true
                             for i in std.range(0, std.length(columns) - 1)
                             if columns[i][2] == 'hidden'
                           },
                           indexByName: {
                             [labels[i][0]]: i
                             for i in std.range(0, std.length(labels) - 1)
                           } + {
                             [field(shown[k])]: std.length(labels) + k
                             for k in std.range(0, std.length(shown) - 1)
                           },
                           renameByName: { [l[0]]: l[1] for l in labels } + {
                             [field(i)]: columns[i][0]
                             for i in shown
                           },
                           includeByName: {},
                         },
                       }],
      fieldConfig: {
        defaults: {
          unit: unit,
          color: { mode: 'thresholds' },
          thresholds: $.neutral,
          custom: { align: 'auto', inspect: false, filterable: true },
        } + (if links == [] then {} else { links: links }),
        overrides: [
          {
            matcher: { id: 'byNames', options: { mode: 'include', names: [header] } },
            properties: [
              { id: 'custom.cellOptions', value: { type: 'color-text' } },
              { id: 'thresholds', value: colored[header] },
            ],
          }
          for header in std.objectFields(colored)
        ],
      },
      options: { cellHeight: 'sm', frameIndex: 0, showHeader: true }
               + (if sortBy == null then {} else { sortBy: [{ displayName: sortBy[0], desc: sortBy[1] }] }),
      _size:: [w, h],
    },

  // Number the panels and place them left to right, row after row. rows: [[title, [panels]]].
  layout(rows)::
    local place(state, panel) =
      local w = panel._size[0];
      local h = panel._size[1];
      local wrap = state.x + w > 24;
      local y = if wrap then state.y + state.line else state.y;
      local x = if wrap then 0 else state.x;
      {
        panels: state.panels + [panel { id: state.id, gridPos: { h: h, w: w, x: x, y: y } }],
        id: state.id + 1,
        x: x + w,
        y: y,
        line: if wrap then h else std.max(state.line, h),
      };
    local addRow(state, row) =
      local header = {
        type: 'row',
        title: row[0],
        id: state.id,
        collapsed: false,
        panels: [],
        gridPos: { h: 1, w: 24, x: 0, y: state.y },
      };
      local inner = std.foldl(place, row[1], {
        panels: state.panels + [header],
        id: state.id + 1,
        x: 0,
        y: state.y + 1,
        line: 0,
      });
      { panels: inner.panels, id: inner.id, y: inner.y + inner.line };
    std.foldl(addRow, rows, { panels: [], id: 1, y: 0 }).panels,

  queryVariable(name, label, query, description, multi=true):: {
    type: 'query',
    name: name,
    label: label,
    description: description,
    datasource: DS,
    query: query,
    definition: query,
    refresh: 2,
    sort: 1,
    multi: multi,
    includeAll: multi,
    options: [],
    regex: '',
    hide: 0,
  } + (
    if multi then {
      allValue: '.+',
      current: { selected: true, text: ['All'], value: ['$__all'] },
    } else { current: { selected: false, text: '', value: '' } }
  ),

  datasourceVariable(uid, name):: {
    type: 'datasource',
    name: 'datasource',
    label: 'Data source',
    description: 'The Prometheus that scrapes jobstore-exporter.',
    query: 'prometheus',
    current: { selected: false, text: name, value: uid },
    options: [],
    refresh: 1,
    regex: '',
    hide: 0,
    includeAll: false,
    multi: false,
  },

  dashboard(uid, title, description, variables, rows, links=[]):: {
    id: null,
    uid: uid,
    title: title,
    description: description,
    tags: ['apscheduler', 'jobstore-exporter'],
    editable: false,
    graphTooltip: 1,
    fiscalYearStartMonth: 0,
    liveNow: false,
    refresh: '1m',
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-24h', to: 'now' },
    timepicker: {},
    timezone: 'browser',
    weekStart: '',
    links: links,
    annotations: {
      list: [{
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      }],
    },
    templating: { list: variables },
    panels: $.layout(rows),
  },
}
