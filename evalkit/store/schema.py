"""Tables of the results store. One ``Run`` per evaluation / training / profile; its tasks; their scores.

A run is keyed by the model's identity (``model_key``: a hash of the weights, adapter and base,
never of a path), each task result by task name, spec and prompt hashes and the evalkit version.
``source_sha256`` (hash of the results file) makes recording and importing idempotent.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # evaluation | training | profile
    status: Mapped[str] = mapped_column(String(16), default="complete")
    created_at: Mapped[str] = mapped_column(String(40))  # ISO-8601 UTC, as in the results file
    recorded_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(timezone.utc))
    model_name: Mapped[str] = mapped_column(Text)  # what the user passed to --model
    model_label: Mapped[str] = mapped_column(Text)  # short human name (alias, checkpoint dir)
    model_key: Mapped[str] = mapped_column(String(64), index=True)
    base_model_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_identity: Mapped[dict] = mapped_column(JSON)
    evalkit_version: Mapped[str] = mapped_column(String(32))
    results_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    profile: Mapped[dict] = mapped_column(JSON, default=dict)
    command: Mapped[list] = mapped_column(JSON, default=list)

    tasks: Mapped[list["TaskResult"]] = relationship(back_populates="run", cascade="all, delete-orphan",
                                                     order_by="TaskResult.id")


class TaskResult(Base):
    __tablename__ = "task_results"
    __table_args__ = (Index("ix_task_identity", "task", "spec_sha256", "prompt_sha256", "evalkit_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(200))
    task_type: Mapped[str] = mapped_column(String(32))
    spec_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prompt_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    evalkit_version: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(64))  # the headline metric of this task type
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    samples_file: Mapped[str | None] = mapped_column(Text, nullable=True)  # absolute path of the JSONL
    result: Mapped[dict] = mapped_column(JSON)  # the task's whole results block

    run: Mapped[Run] = relationship(back_populates="tasks")
    scores: Mapped[list["Score"]] = relationship(back_populates="task_result", cascade="all, delete-orphan",
                                                 order_by="Score.id")


class Score(Base):
    """One figure: overall, per subject or per category."""

    __tablename__ = "scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_result_id: Mapped[int] = mapped_column(ForeignKey("task_results.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(16))  # overall | subject | category
    group: Mapped[str] = mapped_column(String(200))  # "micro", "macro", subject key, category name
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    stderr: Mapped[float | None] = mapped_column(Float, nullable=True)
    n: Mapped[int | None] = mapped_column(Integer, nullable=True)

    task_result: Mapped[TaskResult] = relationship(back_populates="scores")


class RunTag(Base):
    """A label on a run, e.g. ``accepted`` by the nightly job of a suite once its gate passed.

    A table of its own (not a column on ``runs``) so that stores created before it gain it by
    ``create_all`` without a migration.
    """

    __tablename__ = "run_tags"
    __table_args__ = (Index("ix_run_tag", "tag", "suite"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(32))  # accepted
    suite: Mapped[str] = mapped_column(String(200), default="")  # the suite whose gate accepted it
    night: Mapped[str] = mapped_column(String(40), default="")  # the nightly job's night, e.g. 2026-11-23
    tagged_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(timezone.utc))


class Job(Base):
    """A queued `evalkit run | train | nightly` command (the board's jobs; ``evalkit jobs`` on the command line).

    The command runs as that CLI command in its own process group, its output in ``log_path``, so a closed
    browser or a restarted board neither stalls nor loses it. A table of its own: older stores gain it
    by ``create_all``.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    argv: Mapped[list] = mapped_column(JSON)  # after "evalkit": ["run", "--model", ...]
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # queued running done failed cancelled
    user: Mapped[str] = mapped_column(String(200), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)  # also the process group id (its own session)
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(timezone.utc))
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class BoardToken(Base):
    """A board user's access token, stored as its SHA-256 (the token itself is shown once, when created)."""

    __tablename__ = "board_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | voter | operator
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(timezone.utc))


class Vote(Base):
    """One blind A/B judgement: a prompt, two stored runs' answers shown left and right, and the verdict.

    The row is made when the pair is shown (verdict empty) so the page never needs the models' names;
    the vote fills it in. ``base_key`` is the model the comparison is anchored at.
    """

    __tablename__ = "votes"
    __table_args__ = (Index("ix_vote_task", "task"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(200))
    sample: Mapped[str] = mapped_column(String(200))  # the sample's index in the task's data
    left_run: Mapped[int] = mapped_column(Integer)
    right_run: Mapped[int] = mapped_column(Integer)
    left_key: Mapped[str] = mapped_column(String(64))  # model keys (weights hashes), as the store has them
    right_key: Mapped[str] = mapped_column(String(64))
    base_key: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)  # left right tie both_bad
    voter: Mapped[str] = mapped_column(String(200), default="")
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # from shown to voted
    shown_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(timezone.utc))


class NightlyVerdict(Base):
    """One model's gate verdict on one night of a suite (the board's regressions timeline). The nightly job's
    verdict.json files stay the record CI reads; this row makes the history queryable from the store."""

    __tablename__ = "nightly_verdicts"
    __table_args__ = (Index("ix_nightly_suite_night", "suite", "night"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suite: Mapped[str] = mapped_column(String(200))
    night: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(32))  # pass | regression | first night | ...
    exit_code: Mapped[int] = mapped_column(Integer)
    candidate_runs: Mapped[list] = mapped_column(JSON, default=list)
    baseline_runs: Mapped[list] = mapped_column(JSON, default=list)
    failing: Mapped[list] = mapped_column(JSON, default=list)  # the gate's failing rows, as verdict.json has them
    recorded_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(timezone.utc))
