"""The embedded Mesos: master, agent, executor, with the real HTTP APIs of Mesos 1.11."""
