"""The audit report: one self-contained HTML file (verdict, checks, inline plots)."""

from mmrank.report.html import render, write_report

__all__ = ["render", "write_report"]
