"""The "torch" backend's opener: a run directory (or its model/ directory) becomes the task model on PyTorch."""

from __future__ import annotations

from pathlib import Path

from stepwise.backends import Opened


class RunOpener:
    """Opens a run directory (or its model/ directory): the task model on PyTorch, under the run's precision."""

    def claims(self, path: str | Path) -> bool:
        from stepwise.layout import is_exported

        return not is_exported(path)  # a run, or nothing yet (opening it then says what is wrong)

    def open(self, path: str | Path, *, threads: int | None = None) -> Opened:
        from stepwise.errors import StepwiseError
        from stepwise.layout import is_exported
        from stepwise.model import TaskModel, position_limit
        from stepwise.modeldir import read_meta
        from stepwise.rundir import RunDir
        from stepwise.tasks import check_predicts

        if is_exported(path):
            raise StepwiseError("an exported directory runs on ONNX Runtime", path=path,
                                fix="pass the run directory for the torch backend, or drop --backend")
        run_dir = RunDir.open(path)
        check_predicts(read_meta(run_dir.model_dir), path)
        model, tokenizer, meta = TaskModel.from_pretrained(run_dir.model_dir)
        # runs saved before training capped it may allow more than the encoder's positions
        return Opened(model, tokenizer, meta, max_length_limit=position_limit(model.encoder))


OPENER = RunOpener()
