// mqchat JS SDK (placeholder until the SDK lands)
export {};
