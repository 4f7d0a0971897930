"""The range rules of config values and the checks that read them from the structured configs
(schema.py): one `Rule` per field, kept next to the field as `field(metadata={"rule": ...})`.

Every failure is one line naming the key, the value as Hydra's grammar writes it, and what is
allowed. Hydra types an override by its form (`width=abc` is the string "abc", `seed=1.5` a float),
so the schema's fields are typed `Any` and types are checked here, not by OmegaConf (whose errors
are several lines and come before any of ours). `check_argv` catches a misspelt key on the command
line before Hydra composes (Hydra's own error would be several lines and exit 1).
"""
import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Callable, Iterable

from omegaconf import MISSING, OmegaConf

from gan_landscape.cli import DEVICE_NAME, ConfigError, exit_on_user_error

_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    says: str | Callable[[], str]    # what the one line says is allowed (a callable: from a registry)
    ok: Callable[[object], bool]

    @property
    def allowed(self) -> str:
        return self.says() if callable(self.says) else self.says


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def nullable(rule: Rule) -> Rule:
    return Rule(lambda: f"null or {rule.allowed}", lambda v: v is None or rule.ok(v))


def or_null(rule: Rule) -> Rule:
    """Null accepted without saying so (the fid node's wording: null means 'the default')."""
    return Rule(rule.says, lambda v: v is None or rule.ok(v))


def one_of(*options: str) -> Rule:
    return Rule(f"one of {', '.join(options)}", lambda v: isinstance(v, str) and v in options)


def either(*options: str) -> Rule:
    return Rule(" or ".join(options), lambda v: isinstance(v, str) and v in options)


def among(options: Callable[[], Iterable], says: str = "one of {}") -> Rule:
    """A value of a registry read when a value is checked, not when the schema is defined (its
    module is heavy to import, or more entries may be registered)."""
    return Rule(lambda: says.format(", ".join(map(str, options()))),
                lambda v: not OmegaConf.is_config(v) and v in tuple(options()))


POS_INT = Rule("an integer > 0", lambda v: _is_int(v) and v > 0)
NONNEG_INT = Rule("an integer >= 0", lambda v: _is_int(v) and v >= 0)
POSITIVE = Rule("a positive integer", POS_INT.ok)
NUMBER = Rule("a number", _is_number)
POS_NUMBER = Rule("a number > 0", lambda v: _is_number(v) and v > 0)
NONNEG_NUMBER = Rule("a number >= 0", lambda v: _is_number(v) and v >= 0)
FRACTION = Rule("a number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1)
BOOL = Rule("true or false", lambda v: isinstance(v, bool))
DEVICE = Rule("auto, cpu, cuda or cuda:N", lambda v: isinstance(v, str) and bool(DEVICE_NAME.match(v)))
KEEP = Rule("an integer > 0 or all", lambda v: v == "all" or POS_INT.ok(v))
EMA = Rule("null or a number strictly between 0 and 1", lambda v: v is None or (_is_number(v) and 0 < v < 1))


def rule(r: Rule | None = None):
    """A schema leaf: typed Any (see above), no default (the YAML holds it: one source), its rule."""
    return dataclasses.field(default=MISSING, metadata={"rule": r})


def node(cls):
    return dataclasses.field(default_factory=cls)


# ---------------------------------------------------------------- checking a composed config

def check_key(cfg, key: str, r: Rule, error=ConfigError, shown: str | None = None) -> None:
    """The value at `key` (absent: nothing to check) by its rule; the line names it `shown`."""
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    if value is not _ABSENT and not r.ok(value):
        raise error(f"{shown or key}={show(value)}: expected {r.allowed}")


def rules_of(schema, prefix: str = "") -> dict:
    """{dotted key: Rule} of every leaf of the dataclass `schema` that has one, in field order."""
    out = {}
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(f.type):
            out.update(rules_of(f.type, f"{key}."))
        elif f.metadata.get("rule") is not None:
            out[key] = f.metadata["rule"]
    return out


def check(cfg, schema, prefix: str = "", error=ConfigError, skip: Iterable[str] = ()) -> None:
    """The node `cfg` (at `prefix`) against the dataclass `schema`: no key it lacks, each field's
    rule, then the schema's own `CHECKS` (rules across fields). Rules named in `skip` are left to
    the caller (a run kind's own)."""
    cfg = cfg if OmegaConf.is_config(cfg) else OmegaConf.create(cfg)
    unknown(cfg, schema, prefix, error)
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(f.type):
            sub = OmegaConf.select(cfg, f.name, default=None)
            if OmegaConf.is_dict(sub):
                check(sub, f.type, f"{key}.", error, skip)
        elif f.metadata.get("rule") is not None and key not in skip:
            check_key(cfg, f.name, f.metadata["rule"], error, shown=key)
    for cross in getattr(schema, "CHECKS", ()):
        msg = cross(cfg)
        if msg:
            raise error(msg)


def unknown(cfg, schema, prefix: str, error=ConfigError) -> None:
    """A key of the node that the schema lacks (from a YAML, or added with `+key=`)."""
    names = [f.name for f in dataclasses.fields(schema)] + [*getattr(schema, "OPEN", ()), "hydra"]
    for key in cfg:
        if key not in names:
            raise error(not_a_setting(f"{prefix}{key}", schema, prefix))


def not_a_setting(key: str, schema, prefix: str, groups: Iterable[str] = ()) -> str:
    """The line for a key the schema lacks: the node's keys (at the root, also the groups), or
    the schema's own hint for a name users reach for (`NOT_SETTINGS`)."""
    hint = getattr(schema, "NOT_SETTINGS", {}).get(key.rsplit(".", 1)[-1])
    if hint:
        return f"{key} is not a setting: {hint}"
    where = prefix.rstrip(".") or "the config"
    names = [f.name for f in dataclasses.fields(schema)]
    names += [g for g in groups if g not in names and g != "hydra"]
    return f"{key} is not a setting; {where} has {', '.join(names)}"


def show(v) -> str:
    """As Hydra's override grammar writes it: a string that reads as another type is quoted."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, str) and (v.lower() in ("true", "false", "null") or _reads_as_number(v)):
        return f"'{v}'"
    return str(v)


def _reads_as_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- the command line, before Hydra

def misspelt(overrides: list[str], schema, groups: Iterable[str] = ()) -> None:
    """A ConfigError for the first override naming a key the schema lacks (`train.itrs=5`).
    Group choices (`dataset=cifar10`), hydra.* and what the schema types `Any` pass; a line Hydra
    cannot parse is left to Hydra's own message."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    try:
        parsed = OverridesParser.create().parse_overrides(overrides=overrides)
    except HydraException:
        return
    for o in parsed:
        key = o.key_or_group
        if o.is_delete() or o.package is not None or "/" in key or key.split(".")[0] == "hydra":
            continue
        _walk(key, schema, list(groups))


def _walk(key: str, schema, groups: list) -> None:
    prefix = ""
    for i, part in enumerate(key.split(".")):
        fields = {f.name: f for f in dataclasses.fields(schema)}
        if part not in fields:
            if part in getattr(schema, "OPEN", ()) or (i == 0 and part in groups):
                return
            raise ConfigError(not_a_setting(key, schema, prefix, groups if i == 0 else ()))
        if not dataclasses.is_dataclass(fields[part].type):
            return
        schema, prefix = fields[part].type, f"{prefix}{part}."


def check_argv(tool: str, schema, groups: Iterable[str] = (), argv: list[str] | None = None) -> None:
    """For a tool's main(): a misspelt key ends the tool with one line, exit status 2."""
    from hydra._internal.utils import get_args_parser  # the parser hydra.main itself uses
    args, _ = get_args_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    exit_on_user_error(tool, misspelt, list(args.overrides or []), schema, groups)
