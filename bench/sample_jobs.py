"""What the benchmark stores' jobs reference, as an app's own module would.

The scheduler that writes the stores imports this module (APScheduler resolves "module:name"
references when a job is added); the exporter never does: app objects stored in a job's args
decode as inert placeholders.
"""

from __future__ import annotations

from typing import Any


def noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def send_report(recipient: str, *, fmt: str = "pdf") -> None:
    return None


class TenantSync:
    """An app object: a job on its bound method stores the instance in the row's args."""

    def __init__(self, tenant: str, batch: int = 500) -> None:
        self.tenant = tenant
        self.batch = batch
        self.options = {"retries": 3, "endpoints": [f"https://{tenant}.example/api"]}

    def run(self) -> None:
        return None


class ReportSpec:
    """An app object passed as a plain argument."""

    def __init__(self, title: str, columns: list[str]) -> None:
        self.title = title
        self.columns = columns


def build_report(spec: ReportSpec) -> None:
    return None
