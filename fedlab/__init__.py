"""fedlab: the helper package of the federated-learning-for-privacy workbook.

Import what a lesson needs from its module (``from fedlab import fedavg``);
this file imports nothing heavy, and never syft (``fedlab.remote`` is imported
only by the PySyft lesson).
"""

__version__ = "0.1.0"
