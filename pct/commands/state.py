"""pct suspend, resume and template."""

from __future__ import annotations

import typer

from .common import VmidArg


def register(app: typer.Typer) -> None:
    app.command("suspend")(suspend)
    app.command("resume")(resume)
    app.command("template")(template_)


def suspend(vmid: VmidArg) -> None:
    """Suspend the container (freeze all its processes)."""
    from ..ops import freeze  # imported when used: pct starts fast

    freeze.suspend(vmid)


def resume(vmid: VmidArg) -> None:
    """Resume a suspended container."""
    from ..ops import freeze

    freeze.resume(vmid)


def template_(vmid: VmidArg) -> None:
    """Create a template from a stopped container (its volumes become base volumes)."""
    from ..ops import template

    template.make_template(vmid)
