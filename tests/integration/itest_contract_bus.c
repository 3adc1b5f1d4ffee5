/* itest_contract_bus: the bus contract suite (tests/contract/bus_contract.c) against the
 * NATS implementation and a real nats-server on a free loopback port. */
#include <stdio.h>

#include "nt_contract.h"
#include "nt_testsrv.h"

int main(void) {
  nt_testsrv srv;
  if (nt_testsrv_nats_start(&srv, 0, 0, 10000)) {
    fprintf(stderr, "cannot start nats-server\n");
    return 1;
  }
  char url[64];
  snprintf(url, sizeof url, "nats://127.0.0.1:%d", srv.port);
  nt_ct_bus_factory f = {.name = "bus contract: NATS", .create = nt_ct_nats_bus, .ctx = url};
  int failed = nt_ct_bus_run(&f);
  nt_testsrv_stop(&srv);
  return failed;
}
