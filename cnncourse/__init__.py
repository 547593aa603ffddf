"""cnncourse: the support package of the course's notebooks and assignments."""

__version__ = "0.1.0"
