"""Complaint cases: opened from a menu option, an SMS keyword or an agent's disposition; answered fast.

A case has an owner (the customer's account owner, else a supervisor picks),
a priority, a response due time (``[complaints] response_hours`` business
hours) and a status (open, answered, resolved). It is a row of the
customer's timeline, asks for a follow-up by someone with the complaints
skill, and supervisors list what is open and overdue (``ivr complaints
list``, ``GET /supervisor/complaints``).
"""
