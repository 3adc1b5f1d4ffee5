/* main: natter-node entry point (placeholder while the node is assembled). */
int main(void) { return 0; }
