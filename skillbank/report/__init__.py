"""Reports: tables, plots and the HTML view of a skill library."""
