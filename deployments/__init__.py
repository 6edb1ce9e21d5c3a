"""Deployment helpers: prefect.yaml is the one source of the deployments' names, parameters and schedules."""
