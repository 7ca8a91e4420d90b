"""What a run's outcome is: the rule shared by the trainer (which records it) and the
analysis (which applies it to runs recorded before the trainer did). No torch here."""
from __future__ import annotations

import math


def learned_rule(best_val_acc: float | None, last_train_loss: float | None, initial_loss: float | None,
                 num_classes: int, margin: float) -> bool:
    """Did the run learn? Its best validation accuracy after step 0 is at least chance + `margin`
    (clearly above chance), and its last interval-mean training loss is below the loss it
    started from (the loss of its first minibatch, before any update). A run stuck at chance
    or one that ended worse than it started did not learn, whatever its status says."""
    if best_val_acc is None or last_train_loss is None or initial_loss is None:
        return False
    if not (math.isfinite(last_train_loss) and math.isfinite(initial_loss)):
        return False
    return best_val_acc >= 1.0 / num_classes + margin and last_train_loss < initial_loss
