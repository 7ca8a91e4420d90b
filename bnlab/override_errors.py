"""Hydra's own errors about a command-line override, said as one line naming the key and
what is allowed (issue 22): its parser answers `name=ünïcödé` or `paths.results=~/x` with
"LexerNoViableAltException: …; ^" and a typed key given a wrong type with "Error merging
override …", neither naming what the key accepts."""
from __future__ import annotations

from bnlab.errors import ConfigError

# what a key of Hydra's own typed config accepts, where its error does not say
ALLOWED = {"hydra.launcher.n_jobs": "an integer >= 1 (parallel jobs of the local launcher)"}


def unparsable_override(overrides: list[str], exc: Exception) -> ConfigError:
    """The override Hydra's grammar rejects, found by parsing each alone, and what to do."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for line in overrides:
        try:
            parser.parse_overrides([line])
        except Exception:
            key, _, value = line.partition("=")
            if not _:
                return ConfigError(line, "not an override: give key=value (e.g. seed=1), "
                                         "+key=value to add a key, ~key to delete one")
            if value.startswith("~"):
                example = f" (e.g. {key}=$HOME{value[1:]})" if value == "~" or value.startswith("~/") else ""
                return ConfigError(key, f"got {value}; `~` is not expanded in an override: give an "
                                        f"absolute path{example}")
            if "'" in value or '"' in value:
                return ConfigError(key, f"got {value}, which Hydra's override grammar does not take as "
                                        f"written: quote the value and escape the quotes inside it")
            return ConfigError(key, f"got {value}, which Hydra's override grammar does not take unquoted: "
                                    f"quote it, e.g. '{key}=\"{value}\"'")
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), str(exc))
    return ConfigError("overrides", first)


def unmergeable_override(message: str, cause: Exception | None) -> ConfigError | None:
    """"Error merging override key=value": a value of the wrong type for a typed key."""
    if not message.startswith("Error merging override "):
        return None
    key, _, value = message.removeprefix("Error merging override ").partition("=")
    reason = next((ln.strip() for ln in str(cause).splitlines() if ln.strip()), "") if cause else ""
    return ConfigError(key, f"got {value!r}; must be {ALLOWED[key]}" if key in ALLOWED else f"got {value!r}; {reason}")
