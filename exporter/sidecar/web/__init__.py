"""The sidecar's web pages: the status page, the job pages and their JSON.

``paths`` builds their URLs, ``runs`` reads a job's runs on demand, ``jobmodel`` and
``exporter.sidecar.web.status`` shape plain data, ``render`` fills the Jinja2 templates and
``routes`` wires them into the app. Data flows one way: snapshot (and on-demand runs) -> model ->
template.
"""
