"""The web console: approvers and operators, served by the gateway under /console."""
