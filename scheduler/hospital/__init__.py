"""The room inside the hospital: orders in (worklist), objects out (PACS, MPPS, dose SR).

``config`` is the room file's ``dicom:`` section. The DICOM network services live in their own
modules here and are imported only by the commands that use them (pynetdicom is loaded on
demand).
"""
