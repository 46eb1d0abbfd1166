"""Reports (issue 6): statistics first; tables, plots and the `bench report` command follow."""
