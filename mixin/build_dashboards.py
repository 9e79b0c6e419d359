"""The Grafana dashboards built from the mixin's panel specs with grafana-foundation-sdk.

The mixin (``dashboards.libsonnet``, with ``lib/panels.libsonnet``) decides what each dashboard
shows: titles, descriptions, PromQL, units, thresholds, value texts, links, sizes, variables,
all from the one ``_config`` the alerts use. This module decides how Grafana is told, through
Grafana's own typed builders, so the JSON follows Grafana's schema by construction instead of
through a hand-written layer that had to be kept in step with it.

A build-time tool only (``pip install -e '.[dashboards]'``): ``mixin/render.py`` calls
:func:`build` and the JSON it writes is committed, so nothing that runs the exporter or imports
the dashboards needs the SDK.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash
from grafana_foundation_sdk.models import prometheus as prom
from panel_specs import (
    DashboardSpec,
    LinkSpec,
    PanelSpec,
    QuerySpec,
    StatSpec,
    Steps,
    TableSpec,
    TimeSeriesSpec,
    ValueTextSpec,
    VariableSpec,
)

# Every panel, query and variable reads the Prometheus picked in the `datasource` variable.
DATASOURCE = dash.DataSourceRef(type_val="prometheus", uid="${datasource}")

# --- panels -----------------------------------------------------------------------------------


def thresholds(steps: Steps) -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dash.ThresholdsMode.ABSOLUTE)
        .steps([dash.Threshold(value=value, color=color) for value, color in steps])
    )


def data_links(links: Sequence[LinkSpec]) -> list[Builder[dash.DashboardLink]]:
    """Links on a panel's values. Links inside Grafana keep the time range; links to the
    exporter's pages or the runbook have no use for it."""
    return [
        dash_b.DashboardLink(link["title"])
        .type(dash.DashboardLinkType.LINK)
        .url(link["url"])
        .icon("external link")
        .keep_time(not link["url"].startswith("http"))
        for link in links
    ]


def value_texts(texts: Sequence[ValueTextSpec]) -> list[dash.ValueMapping]:
    """Numbers shown as words ("never ran" for -1), in a colour of their own where given."""
    if not texts:
        return []
    options = {
        item["value"]: dash.ValueMappingResult(
            text=item["text"], color=item["color"] or None, index=index
        )
        for index, item in enumerate(texts)
    }
    return [dash.ValueMap(options=options)]


def ref_id(index: int) -> str:
    return chr(ord("A") + index)


def query(expr: str, index: int) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .datasource(DATASOURCE)
        .editor_mode(prom.QueryEditorMode.CODE)
        .expr(expr)
        .ref_id(ref_id(index))
    )


def series_queries(queries: Sequence[QuerySpec], *, instant: bool) -> list[Builder[Dataquery]]:
    out: list[Builder[Dataquery]] = []
    for index, item in enumerate(queries):
        target = (
            query(item["expr"], index)
            .format(prom.PromQueryFormat.TIME_SERIES)
            .legend_format(item["legend"])
        )
        out.append(target.instant() if instant else target.range())
    return out


def stat_panel(spec: StatSpec) -> stat.Panel:
    """One big number per series, its latest value, coloured by the thresholds."""
    return (
        stat.Panel()
        .targets(series_queries(spec["queries"], instant=True))
        .color_scheme(dash_b.FieldColor().mode(dash.FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds(spec["thresholds"]))
        .mappings(value_texts(spec["valueTexts"]))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .percent_change_color_mode(common.PercentChangeColorMode.STANDARD)
        .reduce_options(
            common_b.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)
        )
        .show_percent_change(False)
        .text_mode(common.BigValueTextMode(spec["textMode"]))
        .wide_layout(True)
    )


def timeseries_panel(spec: TimeSeriesSpec) -> timeseries.Panel:
    """Series over time from 0: gauges step at each sample, bars for counts per interval."""
    bars = spec["bars"]
    return (
        timeseries.Panel()
        .targets(series_queries(spec["queries"], instant=False))
        .min(0)
        .color_scheme(dash_b.FieldColor().mode(dash.FieldColorModeId.PALETTE_CLASSIC))
        .thresholds(thresholds(spec["thresholds"]))
        .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
        .line_interpolation(
            common.LineInterpolation.LINEAR if bars else common.LineInterpolation.STEP_AFTER
        )
        .line_width(1)
        .fill_opacity(80 if bars else 10)
        .gradient_mode(common.GraphGradientMode.NONE)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .axis_placement(common.AxisPlacement.AUTO)
        .stacking(common_b.StackingConfig().mode(common.StackingMode.NONE).group("A"))
        .thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.LINE
                if spec["thresholdLine"]
                else common.GraphThresholdsStyleMode.OFF
            )
        )
        .legend(
            common_b.VizLegendOptions()
            .calcs([])
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_b.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )


def table_transformations(spec: TableSpec) -> list[dash.DataTransformerConfig]:
    """One row per label set: the columns' queries merged on their labels, timestamps turned
    into time columns and counts into text, then the columns named and put in order (the
    labels first, then the shown values; `hidden` queries contribute their labels only)."""
    columns = spec["columns"]
    field = {index: f"Value #{ref_id(index)}" for index in range(len(columns))}
    shown = [index for index, column in enumerate(columns) if column["kind"] != "hidden"]
    conversions = [
        {
            "targetField": field[index],
            "destinationType": "time" if columns[index]["kind"] == "time" else "string",
        }
        for index in shown
        if columns[index]["kind"] in ("time", "text")
    ]
    labels = spec["labels"]
    exclude: dict[str, bool] = {"Time": True}
    exclude.update({field[i]: True for i, c in enumerate(columns) if c["kind"] == "hidden"})
    order = {item["label"]: position for position, item in enumerate(labels)}
    order.update({field[index]: len(labels) + k for k, index in enumerate(shown)})
    rename = {item["label"]: item["header"] for item in labels}
    rename.update({field[index]: columns[index]["header"] for index in shown})
    steps = [dash.DataTransformerConfig(id_val="merge", options={})]
    if conversions:
        steps.append(
            dash.DataTransformerConfig(
                id_val="convertFieldType", options={"conversions": conversions, "fields": {}}
            )
        )
    steps.append(
        dash.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": exclude,
                "indexByName": order,
                "renameByName": rename,
                "includeByName": {},
            },
        )
    )
    return steps


def table_panel(spec: TableSpec) -> table.Panel:
    """Latest values as a table: instant queries in table format, one column each."""
    panel = (
        table.Panel()
        .targets(
            [
                query(column["expr"], index).format(prom.PromQueryFormat.TABLE).instant()
                for index, column in enumerate(spec["columns"])
            ]
        )
        .transformations(table_transformations(spec))
        .color_scheme(dash_b.FieldColor().mode(dash.FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds([(None, "text")]))
        .align(common.FieldTextAlignment.AUTO)
        .inspect(False)
        .filterable(True)
        .cell_height(common.TableCellHeight.SM)
        .frame_index(0)
        .show_header(True)
    )
    # A `colored` column shows its text in the colour of its own thresholds. (Columns cannot
    # get a unit of their own: Grafana's schema takes only objects as override values.)
    for colored in spec["colored"]:
        panel = panel.with_override(
            dash.MatcherConfig(
                id_val="byNames", options={"mode": "include", "names": [colored["header"]]}
            ),
            [
                dash.DynamicConfigValue(
                    id_val="custom.cellOptions", value=common.TableColorTextCellOptions()
                ),
                dash.DynamicConfigValue(
                    id_val="thresholds", value=thresholds(colored["thresholds"]).build()
                ),
            ],
        )
    sort = spec["sortBy"]
    if sort is not None:
        panel = panel.sort_by(
            [common_b.TableSortByFieldState().display_name(sort["header"]).desc(sort["descending"])]
        )
    return panel


AnyPanel = TypeVar("AnyPanel", stat.Panel, timeseries.Panel, table.Panel)


def framed(panel: AnyPanel, spec: PanelSpec, panel_id: int) -> AnyPanel:
    """What every panel has: id, title, description, datasource, unit, size, value links."""
    panel = (
        panel.id(panel_id)
        .title(spec["title"])
        .description(spec["description"])
        .datasource(DATASOURCE)
        .unit(spec["unit"])
        .span(spec["w"])
        .height(spec["h"])
    )
    return panel.data_links(data_links(spec["links"])) if spec["links"] else panel


def panel(spec: PanelSpec, panel_id: int) -> stat.Panel | timeseries.Panel | table.Panel:
    if spec["kind"] == "stat":
        return framed(stat_panel(spec), spec, panel_id)
    if spec["kind"] == "timeseries":
        return framed(timeseries_panel(spec), spec, panel_id)
    return framed(table_panel(spec), spec, panel_id)


# --- variables and the dashboard --------------------------------------------------------------


def variable(spec: VariableSpec) -> dash_b.QueryVariable | dash_b.DatasourceVariable:
    """The datasource picker, or a query variable: chained, reloaded when the time range
    changes, sorted; multi-value ones offer All as `.+` and start on it."""
    if spec["kind"] == "datasource":
        return (
            dash_b.DatasourceVariable(spec["name"])
            .label(spec["label"])
            .description(spec["description"])
            .type("prometheus")
            .current(
                dash.VariableOption(
                    selected=False, text=spec["defaultName"], value=spec["defaultUid"]
                )
            )
            .multi(False)
            .include_all(False)
            .regex("")
            .hide(dash.VariableHide.DONT_HIDE)
        )
    multi = spec["multi"]
    built = (
        dash_b.QueryVariable(spec["name"])
        .label(spec["label"])
        .description(spec["description"])
        .datasource(DATASOURCE)
        .query(spec["query"])
        .refresh(dash.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
        .options([])
        .regex("")
        .hide(dash.VariableHide.DONT_HIDE)
    )
    if multi:
        return built.all_value(".+").current(
            dash.VariableOption(selected=True, text=["All"], value=["$__all"])
        )
    return built.current(dash.VariableOption(selected=False, text="", value=""))


def dashboard(spec: DashboardSpec) -> dash.Dashboard:
    """A whole dashboard: rows in order, ids numbered from the top, panels placed by the SDK
    left to right on the 24-wide grid, a new line once one is full (each row of the mixin
    fills whole lines)."""
    builder = (
        dash_b.Dashboard(spec["title"])
        .uid(spec["uid"])
        .description(spec["description"])
        .tags(spec["tags"])
        .readonly()
        .tooltip(dash.DashboardCursorSync.CROSSHAIR)
        .fiscal_year_start_month(0)
        .live_now(False)
        .refresh(spec["refresh"])
        .version(1)
        .time(spec["timeFrom"], "now")
        .timezone("browser")
        .week_start("")
        .links(
            [
                dash_b.DashboardLink(link["title"])
                .type(dash.DashboardLinkType.LINK)
                .url(link["url"])
                .icon("dashboard")
                .tooltip(link["tooltip"])
                .include_vars(True)
                .keep_time(True)
                for link in spec["links"]
            ]
        )
        .variables([variable(v) for v in spec["variables"]])
        .annotation(
            dash_b.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dash.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
    )
    next_id = 1
    for row in spec["rows"]:
        builder = builder.with_row(dash_b.Row(row["title"]).id(next_id))
        next_id += 1
        for item in row["panels"]:
            builder = builder.with_panel(panel(item, next_id))
            next_id += 1
    return builder.build()


def to_json(board: dash.Dashboard) -> str:
    """The dashboard as the committed file holds it: `id` null, so Grafana assigns its own."""
    data: dict[str, Any] = json.loads(json.dumps(board, cls=JSONEncoder))
    data = {"id": None, **data}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def build(specs: dict[str, Any]) -> dict[str, str]:
    """File name -> dashboard JSON, from the mixin's {file name: spec}."""
    return {
        name: to_json(dashboard(cast(DashboardSpec, spec))) for name, spec in sorted(specs.items())
    }
