import pytest
from refactorbot.config import ResourceLimits, load_settings
from refactorbot.errors import ConfigError


def test_defaults_without_a_file(tmp_path):
    settings = load_settings(tmp_path, env={})
    assert settings.home == tmp_path
    assert settings.config_file is None
    assert settings.master_db == tmp_path / "master.db"
    assert settings.core.health_interval == 15


def test_home_from_env_and_per_user_default(tmp_path):
    assert load_settings(env={"RB_HOME": str(tmp_path)}).home == tmp_path
    assert load_settings(env={}).home.name == "refactorbot"


def test_file_then_env_overrides(tmp_path):
    (tmp_path / "refactorbot.toml").write_text(
        "[core]\nhealth_interval = 5\n[llm]\nmodel = 'a/b'\n"
        "[resources]\ntimeout = 9\n[slices.x]\nfoo = 1\n[slices.x.resources]\nmax_concurrency = 2\n"
    )
    env = {"RB_HEALTH_INTERVAL": "7", "RB_MODEL": "c/d", "RB_X_RESOURCES_RATE_LIMIT": "3"}
    settings = load_settings(tmp_path, env=env)
    assert settings.core.health_interval == 7
    assert settings.llm.model == "c/d"
    limits = settings.slice_resources("x", env)
    assert (limits.timeout, limits.max_concurrency, limits.rate_limit) == (9, 2, 3)
    assert settings.slice_resources("other", env) == ResourceLimits(timeout=9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[core\n", "invalid TOML"),
        ("[core]\nhealth_interval = -1\n", "core.health_interval: Input should be greater than 0"),
        ("[core]\nbogus = 1\n", "core.bogus: Extra inputs are not permitted"),
        ("[resources]\nmax_concurrency = 'lots'\n", "resources.max_concurrency: Input should be a valid integer"),
        ("core = 3\n", "core: Input should be a valid dictionary"),
    ],
)
def test_bad_files_give_one_line(tmp_path, text, message):
    (tmp_path / "refactorbot.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, env={})
    assert message in str(info.value)
    assert "\n" not in str(info.value).strip()


def test_missing_explicit_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path, tmp_path / "nope.toml", env={})


def test_bad_resource_env_value_names_the_section(tmp_path):
    settings = load_settings(tmp_path, env={})
    with pytest.raises(ConfigError, match=r"\[slices.x.resources\]: timeout"):
        settings.slice_resources("x", {"RB_X_RESOURCES_TIMEOUT": "soon"})


def test_env_var_name_and_url_settings_refuse_keys_and_bad_urls(tmp_path):
    from refactorbot.config import EnvVarName, HttpUrl, validate_section
    from refactorbot.models import Model

    class Section(Model):
        api_key_env: EnvVarName | None = None
        base_url: HttpUrl | None = None

    assert validate_section(Section, {"api_key_env": "OPENAI_API_KEY", "base_url": "http://x/v1/"}, "[s]").base_url == (
        "http://x/v1"
    )
    with pytest.raises(ConfigError) as info:
        validate_section(Section, {"api_key_env": "sk-secret-123"}, "[s]")
    assert "NAME of an environment variable" in str(info.value) and "sk-secret-123" not in str(info.value)
    with pytest.raises(ConfigError, match="base_url: Value error, must start with http"):
        validate_section(Section, {"base_url": "ftp://x"}, "[s]")


def test_core_timezone_is_an_iana_zone(tmp_path):
    assert load_settings(tmp_path, env={"RB_TIMEZONE": "Europe/Berlin"}).core.timezone == "Europe/Berlin"
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Base'"):
        load_settings(tmp_path, env={"RB_TIMEZONE": "Mars/Base"})
    assert load_settings(tmp_path, env={"TZ": "Asia/Tokyo"}).core.timezone == "Asia/Tokyo"
    assert load_settings(tmp_path, env={}).core.timezone  # the machine's zone, never empty
