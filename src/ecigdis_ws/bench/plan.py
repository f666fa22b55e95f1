"""What a bench run does: its options, and which client is which user in which conversation.

Client i (0-based) is user `user_base + i` and a member of group i // group, whose
conversation id is `conversation_base + group * GROUP_STRIDE + i // group`: the same
ids on every run, so conversations created once in the database (--setup) are found
again, and runs with different group sizes never share a conversation. Idle clients
(--idle-clients) come after the active ones, in groups of their own that start after
the last active group; which URL each client connects to is node_of().
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
from dataclasses import dataclass
from typing import Literal

from ecigdis_ws.bench.changes import ChangeOptions

Scenario = Literal["chat", "broadcast", "connect", "ramp", "reconnect"]
Target = Literal["ecigdis", "node"]
# Which of several URLs (nodes) a client connects to: "conversation" puts every member
# of conversation k on URL k % n, "member" puts member j of every conversation on
# URL j % n (each conversation spread over the nodes).
Placement = Literal["conversation", "member"]
SCENARIOS: tuple[Scenario, ...] = ("chat", "broadcast", "connect", "ramp", "reconnect")
TARGETS: tuple[Target, ...] = ("ecigdis", "node")
PLACEMENTS: tuple[Placement, ...] = ("conversation", "member")

# Groups per group size in the conversation id space: 100,000 conversations of one
# size fit before the next size's ids start.
GROUP_STRIDE = 100_000
DEFAULT_USER_BASE = 1_000_000
DEFAULT_CONVERSATION_BASE = 1_000_000
# One worker process per this many clients, up to one per core, by default. Measured
# here (2 cores): at 8,000 msg/s to 1,000 clients in groups of 5 (48,000 frames/s
# in and out) each of 2 workers used 26 % of a core while the Node peer used 85 %;
# one worker would be near 55 %, so past a few hundred clients two keep each well
# under 70 % and leave the server the rest.
CLIENTS_PER_PROCESS = 500


class BenchError(Exception):
    """The run could not be carried out (not a server failing under load: that is
    reported as errors and losses)."""


@dataclass(frozen=True)
class ScenarioDefaults:
    clients: int
    group: int | None  # None: everyone in one conversation
    rate: float


SCENARIO_DEFAULTS: dict[Scenario, ScenarioDefaults] = {
    "chat": ScenarioDefaults(clients=5000, group=5, rate=1000.0),
    "broadcast": ScenarioDefaults(clients=1000, group=None, rate=20.0),
    "connect": ScenarioDefaults(clients=5000, group=5, rate=0.0),
    "ramp": ScenarioDefaults(clients=5000, group=5, rate=0.0),
    # rate: the load from random members while the server is killed
    "reconnect": ScenarioDefaults(clients=5000, group=5, rate=100.0),
}


@dataclass(frozen=True)
class ReconnectPolicy:
    """How each bench client comes back after its connection drops (reconnect scenario):
    as ChatManager does with socket.io-client's defaults, a delay that doubles from
    `delay_s` up to `delay_max_s`, each varied by up to ± `jitter` of itself, the first
    one before the first attempt; then it rejoins its conversation with `since` = the
    highest message id it received (none with `since=False`)."""

    delay_s: float = 1.0
    delay_max_s: float = 5.0
    jitter: float = 0.5
    since: bool = True
    timeout_s: float = 120.0  # a client not back this long after the kill gives up

    def delay(self, attempt: int, rand: float) -> float:
        """The wait before attempt `attempt` (0-based); `rand` uniform in [0, 1)."""
        base: float = min(self.delay_s * 2.0 ** min(attempt, 32), self.delay_max_s)
        return base * (1 + self.jitter * (2 * rand - 1))


# The fine steps' factor by default: steps of 10 % near the limit, where the coarse
# ladder's 25 % left the held figure a quarter wide.
DEFAULT_FINE_FACTOR = 1.1
# See RampOptions.rest_s.
DEFAULT_REST_S = 5.0
# A ladder longer than this is a mistake in the options (a tiny --step), not a plan.
MAX_RAMP_STEPS = 1000
RampStage = Literal["coarse", "fine"]


@dataclass(frozen=True)
class RampOptions:
    start: float = 1000.0  # msg/s of the first step
    step: float = 1000.0  # added per step, unless factor is set
    factor: float | None = None  # multiplies the rate per step instead
    step_duration_s: float = 5.0
    p99_bound_ms: float = 100.0
    max_rate: float = 1_000_000.0
    # After the first coarse step that fails: from the last step held, multiply by
    # this until a step fails (0: no fine steps).
    fine_factor: float = DEFAULT_FINE_FACTOR
    # Idle seconds after a step that failed, before the next: without them the first
    # fine step ran into what the failure left (a collector's or a checkpoint's
    # catch-up) and failed at 2-4x the p99 of the faster step before it.
    rest_s: float = DEFAULT_REST_S

    def rates(self) -> list[float]:
        """The coarse ladder, from start up to max_rate."""
        rates: list[float] = []
        rate = self.start
        while rate <= self.max_rate + 1e-9 and len(rates) < MAX_RAMP_STEPS:
            rates.append(round(rate, 3))
            rate = rate * self.factor if self.factor else rate + self.step
        return rates


@dataclass(frozen=True)
class RampStep:
    rate: float
    stage: RampStage


class RampClimb:
    """Which rate a ramp tries next, given whether each step held (no I/O, no clock).

    Coarse steps climb the ladder of `RampOptions.rates()` until one fails; then fine
    steps climb from the last step held by `fine_factor` each, below the failed coarse
    rate (which is known to fail), until one fails. The figure is the highest step held.
    """

    def __init__(self, options: RampOptions) -> None:
        self.options = options
        self.coarse = options.rates()
        self.held: float | None = None
        self.failed_coarse: float | None = None
        self.stopped_because = f"reached --max-rate {options.max_rate:g}"
        self._coarse_index = 0
        self._next: RampStep | None = RampStep(self.coarse[0], "coarse") if self.coarse else None

    def next_step(self) -> RampStep | None:
        """The step to run now; None when the climb is over."""
        return self._next

    def record(self, held: bool, verdict: str) -> None:
        """What the step from next_step() did: held, or failed because of `verdict`."""
        step = self._next
        assert step is not None, "record() after the climb ended"
        if held:
            self.held = step.rate
            self._next = self._after_held(step)
        elif step.stage == "coarse" and self.held is not None and self.options.fine_factor:
            self.failed_coarse = step.rate
            self.stopped_because = f"{step.rate:,.0f}/s: {verdict}"
            self._next = self._fine_after(self.held)
        else:
            stage = " (fine)" if step.stage == "fine" else ""
            self.stopped_because = f"{step.rate:,.0f}/s{stage}: {verdict}"
            self._next = None

    def _after_held(self, step: RampStep) -> RampStep | None:
        if step.stage == "fine":
            return self._fine_after(step.rate)
        self._coarse_index += 1
        if self._coarse_index >= len(self.coarse):
            return None
        return RampStep(self.coarse[self._coarse_index], "coarse")

    def _fine_after(self, rate: float) -> RampStep | None:
        assert self.options.fine_factor and self.failed_coarse is not None
        fine = round(rate * self.options.fine_factor, 3)
        # The failed coarse rate is at most --max-rate, so this keeps fine steps under it.
        if fine >= self.failed_coarse - 1e-9:
            # Nothing left between the last step held and the step that failed.
            self.stopped_because += (f"; the fine step after {rate:,.0f}/s held, "
                                     f"{fine:,.0f}/s, would not be below it")
            return None
        return RampStep(fine, "fine")


@dataclass(frozen=True)
class BenchOptions:
    url: str  # one URL, or several separated by commas (clients spread by `placement`)
    scenario: Scenario = "chat"
    target: Target = "ecigdis"
    clients: int | None = None  # None: the scenario's default
    group: int | None = None  # None: the scenario's default (broadcast: all clients)
    rate: float | None = None  # msg/s in total; None: the scenario's default
    duration_s: float = 10.0
    warmup_s: float = 2.0
    drain_s: float = 5.0  # wait at most this long after sending for late deliveries
    settle_s: float = 2.0  # idle time after connecting before memory is read
    concurrency: int = 200  # connections being opened at once, over all processes
    connect_timeout_s: float = 30.0
    processes: int | None = None  # None: sized from the client count
    user_base: int = DEFAULT_USER_BASE
    conversation_base: int = DEFAULT_CONVERSATION_BASE
    jwt_secret: str | None = None  # ecigdis: signs the tokens; None: from the settings
    token_ttl_s: int = 6 * 3600
    server_pid: int | None = None  # read VmRSS from /proc instead of /metrics
    ramp: RampOptions = dataclasses.field(default_factory=RampOptions)
    progress: bool | None = None  # None: a bar on a tty, a periodic line otherwise
    restart_cmd: str | None = None  # reconnect: a shell command that kills and restarts
    reconnect: ReconnectPolicy = dataclasses.field(default_factory=ReconnectPolicy)
    run_id: str = dataclasses.field(default_factory=lambda: secrets.token_hex(4))
    placement: Placement = "conversation"
    # Chat: this many more clients, in conversations of their own, that connect,
    # authenticate and join but never send (on `idle_url`, else placed as the others).
    idle_clients: int = 0
    idle_url: str | None = None
    # Chat: ticks that edit or delete one of the sender's own messages instead of sending
    changes: ChangeOptions = dataclasses.field(default_factory=ChangeOptions)

    @property
    def urls(self) -> tuple[str, ...]:
        """The URLs the (active) clients are spread over."""
        return tuple(part.strip() for part in self.url.split(",") if part.strip())

    @property
    def node_urls(self) -> tuple[str, ...]:
        """Every URL a client connects to: `urls`, then `idle_url` if given."""
        return self.urls + ((self.idle_url,) if self.idle_url else ())

    @property
    def client_count(self) -> int:
        return self.clients if self.clients is not None else SCENARIO_DEFAULTS[
            self.scenario].clients

    @property
    def group_size(self) -> int:
        if self.group is not None:
            return min(self.group, self.client_count)
        default = SCENARIO_DEFAULTS[self.scenario].group
        return self.client_count if default is None else min(default, self.client_count)

    @property
    def message_rate(self) -> float:
        return self.rate if self.rate is not None else SCENARIO_DEFAULTS[self.scenario].rate

    @property
    def process_count(self) -> int:
        if self.processes is not None:
            return max(1, min(self.processes, self.client_count))
        wanted = math.ceil((self.client_count + self.idle_clients) / CLIENTS_PER_PROCESS)
        return max(1, min(wanted, os.cpu_count() or 1, self.client_count))

    @property
    def active_group_count(self) -> int:
        return math.ceil(self.client_count / self.group_size)

    @property
    def group_count(self) -> int:
        """Conversations, the idle clients' own included."""
        return self.active_group_count + math.ceil(self.idle_clients / self.group_size)

    def check(self) -> list[str]:
        """Every problem with these options, as sentences."""
        problems = [f"URL {url!r}: expected http(s):// or ws(s)://" for url in
                    self.node_urls or ("",)
                    if not url.startswith(("http://", "https://", "ws://", "wss://"))]
        problems += self._placement_problems()
        if self.client_count < 1:
            problems.append("--clients must be at least 1")
        if self.group is not None and self.group < 1:
            problems.append("--group must be at least 1")
        if self.scenario in ("chat", "broadcast", "ramp", "reconnect") and self.group_size < 2:
            problems.append("messages need groups of at least 2 (a sender and a receiver)")
        if self.group_count > GROUP_STRIDE:
            problems.append(f"at most {GROUP_STRIDE} conversations per run")
        if self.scenario in ("chat", "broadcast") and self.message_rate <= 0:
            problems.append("--rate must be above 0")
        if self.duration_s <= 0 or self.warmup_s < 0 or self.drain_s < 0:
            problems.append("--duration must be above 0, --warmup and --drain not negative")
        if self.concurrency < 1:
            problems.append("--concurrency must be at least 1")
        if self.ramp.start <= 0 or self.ramp.step_duration_s <= 0:
            problems.append("--start and --step-duration must be above 0")
        if self.ramp.rest_s < 0:
            problems.append("--rest must not be negative")
        problems += self._reconnect_problems()
        problems += self.changes.problems(self.scenario)
        if self.ramp.factor is not None and self.ramp.factor <= 1:
            problems.append("--factor must be above 1")
        if self.ramp.factor is None and self.ramp.step <= 0:
            problems.append("--step must be above 0")
        if self.ramp.fine_factor != 0 and self.ramp.fine_factor <= 1:
            problems.append("--fine-factor must be above 1 (or 0: no fine steps)")
        return problems

    def _placement_problems(self) -> list[str]:
        problems = []
        if self.placement not in PLACEMENTS:
            problems.append(f"--placement must be one of {', '.join(PLACEMENTS)}")
        if self.idle_clients < 0:
            problems.append("--idle-clients must not be negative")
        if (self.idle_clients or self.idle_url) and self.scenario != "chat":
            problems.append("--idle-clients and --idle-url are for --scenario chat")
        if self.idle_url and not self.idle_clients:
            problems.append("--idle-url needs --idle-clients")
        if self.scenario == "reconnect" and len(self.urls) > 1:
            problems.append("--scenario reconnect takes one URL (its restart command "
                            "restarts one server)")
        return problems

    def _reconnect_problems(self) -> list[str]:
        if self.scenario != "reconnect":
            return []
        policy = self.reconnect
        problems = []
        if not self.restart_cmd:
            problems.append("--scenario reconnect needs --restart-cmd (a command that kills "
                            "the server and starts it again)")
        if self.message_rate < 0:
            problems.append("--rate must not be negative")
        if not 0 < policy.delay_s <= policy.delay_max_s:
            problems.append("--reconnect-delay must be above 0 and at most "
                            "--reconnect-delay-max")
        if not 0 <= policy.jitter < 1:
            problems.append("--reconnect-jitter must be at least 0 and below 1")
        if policy.timeout_s <= 0:
            problems.append("--reconnect-timeout must be above 0")
        return problems


@dataclass(frozen=True)
class ClientSpec:
    index: int
    user_id: int
    group: int
    conversation_id: int
    node: int = 0  # index in BenchOptions.node_urls
    idle: bool = False  # joins, never sends


def conversation_id(options: BenchOptions, group: int) -> int:
    return options.conversation_base + options.group_size * GROUP_STRIDE + group


def node_of(placement: Placement, group: int, member: int, nodes: int) -> int:
    """The URL (0 … nodes-1) of member `member` of conversation `group`."""
    return (group if placement == "conversation" else member) % nodes


def client_specs(options: BenchOptions) -> list[ClientSpec]:
    """The active clients (0 … clients-1), then the idle ones, whose conversations
    start after the last active one (never shared with a sender)."""
    size = options.group_size
    urls = len(options.urls)
    specs = []
    for i in range(options.client_count + options.idle_clients):
        idle = i >= options.client_count
        if idle:
            j = i - options.client_count
            group, member = options.active_group_count + j // size, j % size
        else:
            group, member = i // size, i % size
        node = (urls if idle and options.idle_url
                else node_of(options.placement, group, member, urls))
        specs.append(ClientSpec(i, options.user_base + i, group,
                                conversation_id(options, group), node, idle))
    return specs


def groups(options: BenchOptions) -> dict[int, list[int]]:
    """Conversation id -> the user ids of its members."""
    members: dict[int, list[int]] = {}
    for spec in client_specs(options):
        members.setdefault(spec.conversation_id, []).append(spec.user_id)
    return members


def split(specs: list[ClientSpec], parts: int) -> list[list[ClientSpec]]:
    """One list per worker process: contiguous, nearly equal slices of the active
    clients, then of the idle ones, so every worker has its share of the senders
    (each sends rate / parts)."""
    active = _slices([s for s in specs if not s.idle], parts)
    idle = _slices([s for s in specs if s.idle], parts)
    return [a + i for a, i in zip(active, idle, strict=True)]


def _slices(specs: list[ClientSpec], parts: int) -> list[list[ClientSpec]]:
    size, extra = divmod(len(specs), parts)
    slices, start = [], 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        slices.append(specs[start:end])
        start = end
    return slices
