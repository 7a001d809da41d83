"""The compiler: lower -> differentiate -> passes -> memory plan -> emit (see DESIGN.md)."""
from .plan import Plan, TrainStep, compile, compile_train_step

DEFAULT_LEVEL = 2
