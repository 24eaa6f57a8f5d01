// `berth mcp`: an MCP server on stdio, for an agent's MCP client to start. It reaches the local
// node (started if absent), or the node at BERTH_URL with BERTH_TOKEN (an agent's token
// reaches only that agent's environments).
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { BerthError } from '../../core/errors.js';
import { Berth } from '../../sdk/berth.js';
import { createMcpServer } from '../../mcp/tools.js';

export async function cmdMcp(argv: string[]): Promise<number> {
  if (argv.length) throw new BerthError('usage', 'usage: berth mcp (MCP on stdio; BERTH_URL and BERTH_TOKEN pick a remote node)');
  const berth = await Berth.connect(
    process.env.BERTH_URL ? { url: process.env.BERTH_URL, token: process.env.BERTH_TOKEN } : { token: process.env.BERTH_TOKEN },
  );
  const server = createMcpServer(berth);
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.on('end', () => resolve());
  });
  await server.connect(transport);
  await closed;
  await server.close();
  berth.close();
  return 0;
}
