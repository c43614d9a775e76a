// SPDX-License-Identifier: GPL-2.0
/*
 * kind-test: print the kind lab/plugins/insns.c counts each instruction
 * word under, one line per word given in hex ("-" for none). lab/test_lab.py
 * feeds it words the cross assembler made from mnemonics.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kind.h"

int main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		char *end;
		unsigned long w = strtoul(argv[i], &end, 16);
		enum kind k;

		if (*argv[i] == '\0' || *end != '\0' || w > UINT32_MAX) {
			fprintf(stderr, "kind-test: %s: not a 32-bit hex word\n",
				argv[i]);
			return 2;
		}
		k = kind_of(w);
		puts(k == NR_KINDS ? "-" : kind_names[k]);
	}
	return 0;
}
