"""Swarm config: template parses to the defaults, errors name the key, fingerprints."""

from __future__ import annotations

import dataclasses

import pytest

from seedfl.core.config import (
    ConfigError,
    SwarmConfig,
    dump_config,
    parse_config,
)
from seedfl.core.config_template import default_config_text


def test_template_parses_to_defaults() -> None:
    assert parse_config(default_config_text()) == SwarmConfig()


def test_dump_round_trips() -> None:
    cfg = parse_config('[zo]\nlr = 0.5\n[task]\nverbalizer = { "a" = " yes", "b" = " no" }\n')
    again = parse_config(dump_config(cfg))
    assert again == cfg
    assert again.fingerprint() == cfg.fingerprint()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[zo]\nlrr = 1\n", "zo.lrr: unknown key"),
        ("[zo]\nlr = \"fast\"\n", "zo.lr: expected a float"),
        ("[codec]\nname = \"zip\"\n", "codec.name: 'zip' is not one of"),
        ("[zo]\neps = 0\n", "zo.eps"),
        ("[bogus]\nx = 1\n", "bogus: unknown key"),
        ("[task]\ntemplate = \"no placeholder\"\n", "task.template"),
        ("[model]\nname = \"\"\n", "model.name"),
        ("not toml ==", "not valid TOML"),
        ("[swarm]\nmax_origins = 1\n", "swarm.max_origins"),
        ("[zo]\nprefix_cache_mb = -1\n", "zo.prefix_cache_mb"),
    ],
)
def test_errors_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert needle in str(err.value)


def test_fingerprint_covers_swarm_settings_but_not_local_secret_path() -> None:
    base = SwarmConfig()
    other_lr = dataclasses.replace(base, zo=dataclasses.replace(base.zo, lr=2e-4))
    other_secret = dataclasses.replace(
        base, swarm=dataclasses.replace(base.swarm, secret_file="/etc/seedfl/secret")
    )
    assert base.fingerprint() != other_lr.fingerprint()
    assert base.fingerprint() == other_secret.fingerprint()
    no_cache = dataclasses.replace(base, zo=dataclasses.replace(base.zo, prefix_cache_mb=0.0))
    assert base.fingerprint() == no_cache.fingerprint()  # local: speed, not the rule
    assert len(base.swarm_key()) == 16
    assert base.swarm_key() == base.fingerprint()[:16]


def test_integer_accepted_for_float_and_list_for_globs() -> None:
    cfg = parse_config('[zo]\nlr = 1\n[model]\ntrainable = "lm_head*"\n')
    assert cfg.zo.lr == 1.0
    assert cfg.model.trainable == ("lm_head*",)
