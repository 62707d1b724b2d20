"""The offline tools: demo, batch, sweep and the bag tool, small front ends over the pipeline.

No tool imports another tool: what they share is in :mod:`.common`. Only the bag tool touches
ROS messages, through the ROS glue's stereo-set step (:mod:`foundation_stereo_ros.ros`). Run
them as ``python -m foundation_stereo_ros.demo`` (``.batch``, ``.sweep``, ``.bag_tool``).
"""
