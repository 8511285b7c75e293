"""The rendered configuration files' layout: jinja2 templates shipped beside the code.

Each renderer computes its values in Python (paths, quoted command lines, nginx's error
bodies) and a template lays them out, so the template reads as the file it renders. A
subpackage keeps its templates in its own ``templates/`` folder, named
``<subpackage>/<file>.j2``: ``render_template("gateway/nginx.conf.j2", ...)`` reads
``server_setup/gateway/templates/nginx.conf.j2``. They are package data (pyproject.toml), so
an installed package reads them from beside its modules.

The environment is strict: a value a template names that the code did not pass is an
error (StrictUndefined), never an empty string in a config file. Nothing is escaped
(autoescape off: these are nginx, systemd, shell and text files, not HTML). The template's
last newline is kept, and a line holding only a ``{% ... %}`` or ``{# ... #}`` tag leaves
nothing behind (trim_blocks, lstrip_blocks), so logic and comments get lines of their own.

Example::

    >>> render_template("engines/config.pbtxt.j2", name='"course-chat"').splitlines()[1]
    'name: "course-chat"'
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from courselib.errors import MissingDependencyError

if TYPE_CHECKING:
    import jinja2

HERE = Path(__file__).resolve().parent


def template_dirs() -> dict[str, Path]:
    """Subpackage name -> its templates folder (``gateway`` -> ``server_setup/gateway/templates``)."""
    return {folder.parent.name: folder for folder in sorted(HERE.glob("*/templates"))}


@cache
def environment() -> jinja2.Environment:
    """The one environment every renderer uses (built once: it caches compiled templates)."""
    # imported here, as compose.py imports yaml: `plan`, `status` and the rest of
    # server_setup work on the base install, which has no jinja2
    try:
        import jinja2
    except ImportError:
        raise MissingDependencyError("jinja2", extra="serve") from None
    loaders = {name: jinja2.FileSystemLoader(folder) for name, folder in template_dirs().items()}
    return jinja2.Environment(
        loader=jinja2.PrefixLoader(loaders, delimiter="/"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_template(name: str, /, **values: object) -> str:
    """The text of template ``name`` (``<subpackage>/<file>.j2``) filled with ``values``.

    Raises jinja2.UndefinedError when the template names a value not given.
    """
    return environment().get_template(name).render(values)
