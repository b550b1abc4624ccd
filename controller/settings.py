"""One typed settings model, read from environment variables.

The first names and defaults are those of the single-process worker qforge replaces
(JOBS_DIR, XTB_TIMEOUT, LOG_DIR, WORKER_ID, MAX_CONCURRENT_JOBS, JOB_TIMEOUT,
POLL_INTERVAL, HEALTH_CHECK_INTERVAL), so an environment written for it still works;
the cluster-only settings configure the runner pods. Each setting is read from its name
in capitals, except the scratch root: QFORGE_SCRATCH, the runner's name for it too
(that worker's WORKDIR is still read, as a deprecated alias).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qforge_runner.errors import validation_line

log = logging.getLogger(__name__)

# A setting read from another variable than its name in capitals.
_ENV_NAMES = {"scratch": "QFORGE_SCRATCH"}
# Old names still read (when the new one is unset), with a warning: old -> setting.
DEPRECATED_ALIASES = {"WORKDIR": "scratch"}


def env_name(setting: str) -> str:
    """The environment variable a setting is read from (QFORGE_SCRATCH, JOBS_DIR, ...)."""
    return _ENV_NAMES.get(setting, setting.upper())


class SettingsError(ValueError):
    """A setting in the environment has a value we cannot use."""


class OwnerLimits(BaseModel):
    """One owner's own limits (OWNER_LIMITS), in place of the defaults for everyone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_running: int | None = Field(None, ge=1)
    max_queued: int | None = Field(None, ge=1)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs_dir: Path = Field(Path("./jobs"), description="JOBS_DIR: the job store")
    scratch: Path | None = Field(None, description="QFORGE_SCRATCH: scratch root for xtb runs")
    xtb_timeout: float = Field(300, gt=0, description="XTB_TIMEOUT: seconds for one xtb call")
    log_dir: Path | None = Field(None, description="LOG_DIR: also log to a file here")
    worker_id: str = Field("worker_1", min_length=1, max_length=63)
    max_concurrent_jobs: int = Field(3, ge=1, le=10_000)
    job_timeout: float = Field(3600, gt=0, description="JOB_TIMEOUT: default per-job timeout")
    poll_interval: float = Field(5, gt=0)
    health_check_interval: float = Field(30, gt=0)
    # How long a worker may go without renewing its heartbeat before others take back
    # its RUNNING jobs (a worker renews every poll interval).
    lease_seconds: float = Field(60, gt=0)
    max_attempts: int = Field(3, ge=1, description="runs of one job before it is failed")
    # AUTO_RETRY: every job's failed runs go up the retry ladder (qforge.scheduling.ladder,
    # docs/retry.md), as for a job submitted with --auto-retry. Off by default.
    auto_retry: bool = False
    # Seconds between two syncs of the indexes with the job folders while a worker or
    # controller runs (listings, and a read of only the folders no index holds): a
    # marker lost by hand or by a damaged disk is found again within this time.
    # 0: only at start.
    index_sync_seconds: float = Field(300, ge=0)
    # `qforge submit` refuses bigger inputs before reading them (all files of one call
    # together; stdin is counted as it is read), and molecules with more atoms.
    max_input_bytes: int = Field(256 * 1024**2, ge=1,
                                 description="MAX_INPUT_BYTES: input of one submit, bytes")
    max_atoms: int = Field(10_000, ge=1, description="MAX_ATOMS: atoms of one molecule")
    # --- observability (docs/observability.md) ---
    # Port of the Prometheus /metrics endpoint (METRICS_PORT); None: no endpoint, 0: any
    # free port (the log says which).
    metrics_port: int | None = Field(None, ge=0, le=65535)
    # Address the /metrics endpoint listens on (METRICS_ADDRESS).
    metrics_address: str = Field("0.0.0.0", min_length=1)
    # text (lines worded as the worker qforge replaces worded them, controller/logs.py)
    # or json (one object per line) (LOG_FORMAT).
    log_format: Literal["text", "json"] = "text"

    # --- fair share between owners (docs/fairshare.md) ---
    # FAIR_SHARE_WEIGHTS, JSON {"alice": 2, "bob": 1}: an owner's share of the slots is
    # their weight over the weights of everyone with work; an owner not named weighs 1.
    fair_share_weights: dict[str, Annotated[float, Field(gt=0, le=1e6)]] = Field(
        default_factory=dict)
    # OWNER_MAX_RUNNING: at most this many running jobs per owner (None: no limit);
    # OWNER_MAX_QUEUED: a submission that would leave an owner more queued jobs is
    # refused. OWNER_LIMITS, JSON {"alice": {"max_running": 8, "max_queued": 50000}}:
    # per-owner values in place of those two.
    owner_max_running: int | None = Field(None, ge=1)
    owner_max_queued: int | None = Field(None, ge=1)
    owner_limits: dict[str, OwnerLimits] = Field(default_factory=dict)

    # --- the front door (qforge server, docs/server.md) ---
    # Requests a second each token (or proxy user) may make on average (API_RATE_LIMIT),
    # in bursts of API_RATE_BURST; past them the server answers 429 with Retry-After.
    api_rate_limit: float = Field(50, gt=0)
    api_rate_burst: int = Field(200, ge=1)

    # --- in the cluster (qforge controller) ---
    namespace: str = "default"
    # RELEASE: one release = one store, one cap, one leader. Its runner Jobs carry
    # app.kubernetes.io/instance=<release>, its Lease is "<release>-controller".
    release: str = Field("qforge", min_length=1, max_length=53,
                         pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    # The controller's own client-side limit on Kubernetes API requests (token bucket):
    # a job costs 2 writes (its create, its deletion), so 200/s holds ~100 launches/s
    # with as many completions.
    kube_api_qps: float = Field(200, gt=0)
    kube_api_burst: int = Field(400, ge=1)
    # Threads that make the API writes (Job creates, deletions, Events) off the
    # scheduling thread.
    kube_api_writers: int = Field(8, ge=1, le=64)
    # Safety net of the watch-fed view of runner Jobs: a full LIST this often while
    # Jobs run (besides the one at start and one after a broken watch).
    kube_resync_seconds: float = Field(300, ge=1)
    # LAUNCH_EVENTS: also post an Event when a Job is launched (one more API write per
    # job; the Job's own labels and the Job controller's SuccessfulCreate say as much).
    launch_events: bool = False
    # SUCCESS_EVENTS: also post a "Completed" Event when a job succeeds (one more API
    # write per job; successes are in the store, the metrics and `qforge show`). Failures
    # always get their "Failed" Event.
    success_events: bool = False
    # JOB_KEEP_SECONDS: how long a finished runner Job stays (so `kubectl get jobs` shows
    # recent ones) after its outcome is in the store; then the controller deletes it. The
    # controller is the only deleter of its Jobs and deletes only recorded ones.
    job_keep_seconds: float = Field(300, ge=0)
    # KUBE_POD_WATCH: follow every runner pod with a watch (a running job's node and why
    # it waits in `qforge show` at once, pods by phase in the metrics). Off (the default:
    # it costs less), pods are read only when needed: a failed Job's pod (OOMKilled, exit
    # code), and the pods of a Job that has had no ready pod for POD_READ_AFTER seconds
    # (why it waits); a finished job's node comes from its runner's report.
    kube_pod_watch: bool = False
    # The controller's own pod (downward API): a standby takes the Lease at once when
    # the pod that holds it no longer exists.
    pod_name: str | None = None
    pod_uid: str | None = None
    runner_image: str = "qforge-runner:latest"
    image_pull_policy: str = "IfNotPresent"
    # Secrets (docker-registry) runner pods pull their image with (IMAGE_PULL_SECRETS,
    # a JSON list of names): a private registry.
    image_pull_secrets: list[str] = Field(default_factory=list)
    pvc_name: str = "qforge-jobs"
    runner_cpu: str = "1"
    runner_memory: str = "1Gi"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(default_factory=dict)
    priority_class: str | None = None
    # Extra annotations on runner pods (e.g. a service mesh opt-out; the kwok test
    # cluster reads its fake outcomes from them). RUNNER_POD_ANNOTATIONS, JSON.
    runner_pod_annotations: dict[str, str] = Field(default_factory=dict)
    # karpenter.sh/do-not-disrupt and cluster-autoscaler.kubernetes.io/safe-to-evict=false
    # on runner pods: an autoscaler never evicts a running calculation to consolidate.
    runner_disruption_protection: bool = True
    # TTL_SECONDS_AFTER_FINISHED: let Kubernetes' TTL controller delete finished runner
    # Jobs instead (unset by default). Its Jobs then carry qforge's outcome finalizer, so
    # a Job the TTL removes while no controller runs stays until its outcome is recorded.
    ttl_seconds_after_finished: int | None = Field(None, ge=0)
    # sizeLimit of the runner pod's scratch emptyDir (xtb's temporary files, HOME, TMPDIR).
    runner_scratch_size: str = Field("1Gi", min_length=1)
    # Folder of the job store inside the PVC ("" = the PVC's root, as the chart mounts it):
    # a runner pod mounts the PVC with subPath "<pvc_sub_path>/<job_id>".
    pvc_sub_path: str = Field("", pattern=r"^([^/.][^/]*(/[^/.][^/]*)*)?$")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from environment variables, then apply explicit overrides.

        Raises SettingsError with one line naming the variable when a value is bad.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for alias, name in DEPRECATED_ALIASES.items():
            new = env_name(name)
            if env.get(alias) and not env.get(new):
                log.warning("%s is deprecated: set %s instead (it holds the same value)",
                            alias, new)
                values[name] = env[alias]
        for name in cls.model_fields:
            key = env_name(name)
            if key in env and env[key] != "":
                raw = env[key]
                if name in {"node_selector", "tolerations", "affinity", "runner_pod_annotations",
                            "image_pull_secrets", "fair_share_weights", "owner_limits"}:
                    try:
                        values[name] = json.loads(raw)
                    except json.JSONDecodeError as exc:
                        raise SettingsError(f"{key} is not valid JSON: {exc.msg}") from None
                else:
                    values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            # named as the environment variable: MAX_CONCURRENT_JOBS: Input should be ...
            raise SettingsError(validation_line(
                exc, location=lambda loc: env_name(str(loc[0])))) from None
