"""The miniature checkpoint's chat template (see miniature.py): Gemma 4's prompt format."""

# Gemma 4 prompt format. `enable_thinking` puts <|think|> at the start of the system turn; with
# thinking off, the generation prompt closes an empty thought channel. Tools are declared in the
# system turn (<|tool>declaration:NAME{...}<tool|>), an assistant's calls are
# <|tool_call>call:NAME{key:value}<tool_call|> and the results that follow them
# <|tool_response>response:NAME{value:...}<tool_response|>, strings quoted with <|"|>: the format
# of Gemma 4's own template; after results the model's turn goes on, with no new turn opened.
CHAT_TEMPLATE = r"""{%- macro render(content) -%}
{%- if content is string -%}{{ content }}
{%- else -%}{%- for item in content -%}
{%- if item['type'] == 'text' -%}{{ item['text'] }}
{%- elif item['type'] == 'image' -%}{{ '<|image|>' }}
{%- elif item['type'] == 'audio' -%}{{ '<|audio|>' }}
{%- elif item['type'] == 'video' -%}{{ '<|video|>' }}
{%- endif -%}{%- endfor -%}{%- endif -%}
{%- endmacro -%}
{%- macro value(item) -%}
{%- if item is string -%}{{ '<|"|>' + item + '<|"|>' }}
{%- elif item is boolean -%}{{ 'true' if item else 'false' }}
{%- elif item is none -%}null
{%- elif item is mapping -%}{{ '{' }}{%- for key, inner in item | dictsort -%}
{{ key }}:{{ value(inner) }}{{ ',' if not loop.last }}{%- endfor -%}{{ '}' }}
{%- elif item is sequence -%}[{%- for inner in item -%}
{{ value(inner) }}{{ ',' if not loop.last }}{%- endfor -%}]
{%- else -%}{{ item }}
{%- endif -%}
{%- endmacro -%}
{%- set thinking = enable_thinking is defined and enable_thinking -%}
{{- bos_token -}}
{%- if (messages and messages[0]['role'] == 'system') or thinking or tools -%}
{{- '<|turn>system\n' + ('<|think|>' if thinking else '') -}}
{%- if messages and messages[0]['role'] == 'system' -%}
{{- render(messages[0]['content']) -}}
{%- set messages = messages[1:] -%}
{%- endif -%}
{%- for tool in tools or [] -%}
{{- '<|tool>declaration:' + tool['function']['name'] -}}
{{- value({'description': tool['function'].get('description', ''),
           'parameters': tool['function'].get('parameters', {})}) + '<tool|>' -}}
{%- endfor -%}
{{- '<turn|>\n' -}}
{%- endif -%}
{%- set ns = namespace(previous=None, open=false) -%}
{%- for message in messages -%}
{%- if message['role'] != 'tool' -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{%- if not (ns.open and role == 'model') -%}{{- '<|turn>' + role + '\n' -}}{%- endif -%}
{%- set ns.open = false -%}
{%- for call in message.get('tool_calls') or [] -%}
{{- '<|tool_call>call:' + call['function']['name'] -}}
{%- set arguments = call['function']['arguments'] -%}
{{- value(arguments) if arguments is mapping else '{' + arguments + '}' -}}
{{- '<tool_call|>' -}}
{%- endfor -%}
{%- set answered = namespace(any=false, stop=false) -%}
{%- if message.get('tool_calls') -%}
{%- for later in messages[loop.index0 + 1:] -%}
{%- if later['role'] != 'tool' -%}{%- set answered.stop = true -%}{%- endif -%}
{%- if not answered.stop -%}
{%- set named = namespace(name='unknown') -%}
{%- for call in message['tool_calls'] -%}
{%- if call.get('id') == later.get('tool_call_id') -%}
{%- set named.name = call['function']['name'] -%}
{%- endif -%}
{%- endfor -%}
{{- '<|tool_response>response:' + named.name + value({'value': render(later['content'])}) -}}
{{- '<tool_response|>' -}}
{%- set answered.any = true -%}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- set text = render(message['content']) -%}
{{- text -}}
{%- if answered.any and not text -%}{%- set ns.open = true -%}
{%- else -%}{{- '<turn|>\n' -}}{%- endif -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt and not ns.open -%}
{{- '<|turn>model\n' -}}
{%- if not thinking -%}{{- '<|channel>thought\n<channel|>' -}}{%- endif -%}
{%- endif -%}"""
