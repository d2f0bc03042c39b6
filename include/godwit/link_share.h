/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_LINK_SHARE_H
#define GODWIT_LINK_SHARE_H

/*
 * The migrations leaving one host share its link. A source about to pause its guest
 * claims the link (a shared OFD lock on one host-wide file); the others, in pre-copy,
 * hold back their next record while a claim stands, so that the paused guest's last
 * pages and state go at the link's whole rate, not at a share of it behind their bulk
 * (docs/migration-flow.md, "Several moves from one host"). A claim dies with its
 * process; a source never holds back for longer than LINK_SHARE_MAX_WAIT_NS per claim
 * it sees, so a stuck claimant slows the others by that much once, not forever.
 * Every open source also marks itself under way (a shared lock on the next byte), so
 * that each can tell whether it moves alone (link_share__others).
 */
#include <stdbool.h>
#include <stdint.h>

#define LINK_SHARE_DEFAULT_PATH "/run/godwit/migrations.lock"
/* Overrides the path; "none" turns the sharing off for this process. */
#define LINK_SHARE_ENV	       "GODWIT_MIGRATION_LOCK"
#define LINK_SHARE_MAX_WAIT_NS (50 * 1000000ULL)
/* How often link_share__others looks again. */
#define LINK_SHARE_LOOK_NS (10 * 1000000ULL)

struct link_share {
	int fd; /* -1: off (no such file can be made here, or turned off) */
	bool claimed;
	uint64_t held_back_since;  /* a claim seen since then (util__now_ns), 0: none */
	uint64_t waits, waited_ns; /* times it held back, and for how long in all */
	uint64_t looked_at;	   /* when link_share__others last looked (util__now_ns) */
	bool others;		   /* what it saw */
};

/*
 * Opens path (NULL: the environment's, or the default), creating it and its folder;
 * from then until closed, this move is under way for the others to see.
 */
void link_share__open(struct link_share *l, const char *path);
void link_share__close(struct link_share *l);
/* This process is about to pause its guest: the others hold back. */
void link_share__claim(struct link_share *l);
void link_share__release(struct link_share *l);
/*
 * Before a pre-copy record: waits while another process's claim stands, at most
 * LINK_SHARE_MAX_WAIT_NS for one claim; 1 ms steps, or until *cancelled.
 */
void link_share__give_way(struct link_share *l, const bool *cancelled);
/* Whether another move from this host is under way: looked up at most every LOOK_NS. */
bool link_share__others(struct link_share *l);

#endif
