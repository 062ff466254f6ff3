"""Training logs: JSONL always, TensorBoard when installed, a progress bar on the main process."""

from __future__ import annotations

import time
from pathlib import Path

from syllabus.progress import progress_bar
from syllabus.store import RowAppender


class TrainLogger:
    def __init__(
        self,
        out: Path,
        is_main: bool,
        show_progress: bool,
        total_steps: int | None,
        max_time_s: float | None,
    ):
        self.is_main = is_main
        self.last_eval_step = -1
        # A resumed run appends; RowAppender first cuts a line torn by the kill.
        self._file = RowAppender(out / "log.jsonl") if is_main else None
        self._tb = None
        if is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self._tb = None
        self._progress = progress_bar(
            is_main and show_progress,
            "loss {task.fields[loss]} · {task.fields[rate]} tok/s · MFU {task.fields[mfu]}",
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=total_steps, loss="-", rate="-", mfu="-"
        )
        self._max_time_s = max_time_s

    def _write(self, row: dict) -> None:
        if self._file:
            self._file.write(row)

    def step(
        self,
        step: int,
        tokens: int,
        loss: float,
        lr: float,
        rate: float,
        mfu: float | None,
        *,
        mfu_note: str | None = None,
    ) -> None:
        """One training step's row; `mfu_note` says why its MFU is left out (when it is)."""
        if not self.is_main:
            return
        row = {
            "step": step,
            "tokens": tokens,
            "loss": loss,
            "lr": lr,
            "tokens_per_s": rate,
            "mfu": mfu,
            "time": time.time(),
        }
        if mfu_note:
            row["mfu_note"] = mfu_note
        self._write(row)
        if self._tb:
            self._tb.add_scalar("train/loss", loss, step)
            self._tb.add_scalar("train/lr", lr, step)
            self._tb.add_scalar("train/tokens_per_s", rate, step)
        self._progress.update(
            self._task,
            completed=step,
            loss=f"{loss:.3f}",
            rate=f"{rate:,.0f}",
            mfu=f"{100 * mfu:.1f}%" if mfu is not None else "-",
        )

    def eval(self, step: int, tokens: int, val_loss: float) -> None:
        self.last_eval_step = step
        if not self.is_main:
            return
        self._write({"step": step, "tokens": tokens, "val_loss": val_loss, "time": time.time()})
        if self._tb:
            self._tb.add_scalar("val/loss", val_loss, step)

    def close(self) -> None:
        self._progress.stop()
        if self._file:
            self._file.close()
        if self._tb:
            self._tb.close()
