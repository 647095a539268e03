"""Declarative host networking: model, observe, plan (pure), apply, rollback.

Filled in by the netconfig issue; the package exists so the distribution's layout is fixed.
"""
