"""The post-call satisfaction survey: who is asked, the questions, the answers, and recovery.

After an agent hangs up on a queue call, the caller continues in the dialplan
(app_queue's ``c`` option) into the AGI route ``survey`` when ivr marked the
call for one (:mod:`ivr.survey.plugin`). Questions come from a plugin, a TOML
file or the built-in three (:mod:`ivr.survey.questions`); every answer is
stored as it is given (:mod:`ivr.survey.store`); a score of 4 or 5 asks for a
recovery follow-up through ``ivr_open_followup``.
"""
