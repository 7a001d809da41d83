"""The compiler: lower -> differentiate -> passes -> memory plan -> emit (see DESIGN.md)."""
from .plan import Plan, compile

DEFAULT_LEVEL = 2
