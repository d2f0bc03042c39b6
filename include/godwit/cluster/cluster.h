/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_H
#define GODWIT_CLUSTER_H

/* The cluster's commands (docs/cluster.md): each returns the process's exit status. */
int cluster_cli__main(int argc, char **argv);
int agent__main(int argc, char **argv);
int manager__main(int argc, char **argv);
int simulate__main(int argc, char **argv);

#endif
