"""Grafana dashboards as code (grafana-foundation-sdk); generated JSON goes to charts/alert-history/files/dashboards/."""
