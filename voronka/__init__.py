"""voronka: CRM + ad-platform ELT and marketing-analytics warehouse."""

__version__ = "0.1.0"
