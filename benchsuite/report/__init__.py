"""From stored runs to reports: the analysis (summary, selection, comparisons per task and across
tasks), its rendering (Markdown, HTML, JSON, figures), report folders, claims, excerpts, seed
planning and the calibration simulations."""
