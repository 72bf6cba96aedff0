import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { configFromEnv } from './config.js';
import { startMetrics } from './metrics.js';

const config = configFromEnv();
// Before the app: the library takes its meter when it starts.
startMetrics();
const app = await NestFactory.create(AppModule.forRoot(config), { logger: ['log', 'warn', 'error'] });
// SIGTERM/SIGINT run the shutdown hooks: leadership is resigned and the lease revoked, so another replica
// takes over at once instead of after the TTL.
app.enableShutdownHooks();
await app.listen(config.port, '127.0.0.1');
new Logger('Sample').log(`listening on http://127.0.0.1:${config.port} as ${config.identity}`);
