"""The reconcile loop's edge: observe, decide (pure policy), render, plan, apply, record."""
