"""Business rules (writes) as plain functions with keyword-only arguments (HackSoft style)."""
