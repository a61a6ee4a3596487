"""The HTML report (issue 13): one self-contained page to attach to a ticket.

This package owns the page: report/html/page.py turns a Report (or a diff's
Comparison and its two Reports) into template data, ladder.py lays out the
ladder diagrams, templates/ holds the Jinja2 templates (package data).
Invariant: the page loads nothing from anywhere (inline CSS and SVG, one small
inline script allowed by its hash in the page's Content-Security-Policy), and
every string from the capture reaches it escaped by Jinja2's autoescaping.
"""

from authtrace.report.html.page import render_diff_html, render_report_html

__all__ = ["render_diff_html", "render_report_html"]
