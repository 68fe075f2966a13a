"""Email bodies from the Jinja2 templates in `eventforge/notifier/templates/`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jinja2

from eventforge.notifier.service_layer.ports import EmailRenderer, RenderedEmail

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class JinjaEmailRenderer(EmailRenderer):
    """`<name>.txt.j2` (plain text) and `<name>.html.j2` (HTML, autoescaped) per template."""

    def __init__(self, directory: Path = TEMPLATES) -> None:
        self.environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

    def render(self, template: str, subject: str, context: Mapping[str, object]) -> RenderedEmail:
        values = {**context, "subject": subject}
        text = self.environment.get_template(f"{template}.txt.j2").render(values)
        html = self.environment.get_template(f"{template}.html.j2").render(values)
        return RenderedEmail(subject=subject, text=text, html=html)
