"""The panel specs as the mixin emits them (``dashboards.libsonnet`` with
``lib/panels.libsonnet``): plain data, typed here so that ``build_dashboards.py`` reads every
field by name and mypy holds the jsonnet's output and the builder to one shape. Keys keep the
jsonnet's spelling (``timeFrom``, ``noValue``), which is why these are TypedDicts and not
dataclasses: the JSON loads into them as it is.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

Steps = list[tuple[float | None, str]]


class QuerySpec(TypedDict):
    expr: str
    legend: str


class LinkSpec(TypedDict):
    title: str
    url: str


class ValueTextSpec(TypedDict):
    value: str
    text: str
    color: str


class StatSpec(TypedDict):
    kind: Literal["stat"]
    title: str
    description: str
    queries: list[QuerySpec]
    unit: str
    thresholds: Steps
    valueTexts: list[ValueTextSpec]
    textMode: str
    links: list[LinkSpec]
    w: int
    h: int


class TimeSeriesSpec(TypedDict):
    kind: Literal["timeseries"]
    title: str
    description: str
    queries: list[QuerySpec]
    unit: str
    bars: bool
    thresholds: Steps
    thresholdLine: bool
    links: list[LinkSpec]
    w: int
    h: int


class ColumnSpec(TypedDict):
    header: str
    expr: str
    kind: Literal["value", "time", "text", "hidden"]


class LabelSpec(TypedDict):
    label: str
    header: str


class SortSpec(TypedDict):
    header: str
    descending: bool


class ColoredSpec(TypedDict):
    header: str
    thresholds: Steps


class TableSpec(TypedDict):
    kind: Literal["table"]
    title: str
    description: str
    columns: list[ColumnSpec]
    labels: list[LabelSpec]
    unit: str
    sortBy: SortSpec | None
    colored: list[ColoredSpec]
    links: list[LinkSpec]
    w: int
    h: int


PanelSpec = StatSpec | TimeSeriesSpec | TableSpec


class RowSpec(TypedDict):
    title: str
    panels: list[PanelSpec]


class VariableSpec(TypedDict):
    kind: Literal["query", "datasource"]
    name: str
    label: str
    description: str
    query: NotRequired[str]
    multi: NotRequired[bool]
    defaultUid: NotRequired[str]
    defaultName: NotRequired[str]


class DashboardLinkSpec(TypedDict):
    title: str
    url: str
    tooltip: str


class DashboardSpec(TypedDict):
    uid: str
    title: str
    description: str
    tags: list[str]
    refresh: str
    timeFrom: str
    variables: list[VariableSpec]
    rows: list[RowSpec]
    links: list[DashboardLinkSpec]
